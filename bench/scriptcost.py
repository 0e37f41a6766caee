#!/usr/bin/env python3
"""scriptcost.py — what the job scripts cost inside Redis, per call, from INFO commandstats.

Starts a private redis-server (unix socket in a temporary directory), loads redis/*.lua as they
are in the work tree (or, with --rev REV, as they are in git revision REV), and runs N jobs
through submit.lua, claim.lua (one job a call), log.lua (a line and a progress, then a line
alone) and complete.lua (done), then N status reads as jobgate-status makes them (HMGET json
version, or the shown fields for a revision without `json`), then N claims with nothing to do
(an idle worker's). Prints each script's usec_per_call (Redis' own CPU time, no network)
and the commands run inside the scripts, Redis' memory per job (used_memory's growth / jobs) and
its minor page faults per submit. Redis runs with jobgate's recommended settings
(tests/harness.py REDIS_RECOMMENDED); --node-bytes B sets stream-node-max-bytes instead (4096 is
Redis' default). Figures of one quiet run; compare revisions run the
same way, one after the other. With --callgrind, Redis runs under valgrind's callgrind and each
phase is also given in instructions per call (repeatable, unlike time on a shared machine).

With --pipe K the submits go K to a round trip (what pipelining the EVALSHAs of requests that
arrive together would save Redis: one read and one write per batch).

With --fcall the same scripts run as Redis 7 functions of one library (bench/funclib.py: FUNCTION
LOAD once, then FCALL with the same keys and arguments) instead of EVALSHA; --jt-cache also makes
that library's j_t keep the last second it rendered.

    /usr/bin/python3 bench/scriptcost.py [--n 5000] [--rev main] [--callgrind] [--pipe K]
                                         [--fcall [--jt-cache]] [--node-bytes B]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import harness  # noqa: E402  (the RESP client)
import funclib  # noqa: E402  (the function library prototype)
from measure import callgrind_phase  # noqa: E402

SHOWN = ["id", "queue", "type", "status", "priority", "attempts", "max_attempts", "progress",
         "created_at", "started_at", "finished_at", "run_at", "worker", "result", "error",
         "cached", "cache_key", "cancel_requested", "version"]


def script(rev, name):
    if rev is None:
        with open(os.path.join(ROOT, "redis", name + ".lua"), "rb") as f:
            return f.read()
    return subprocess.run(["git", "-C", ROOT, "show", "%s:redis/%s.lua" % (rev, name)],
                          check=True, capture_output=True).stdout


def cpu(pid):
    """CPU seconds (user + system) of process pid so far, from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def minflt(pid):
    """Minor page faults of process pid so far (fresh pages it touched), from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def stats(r):
    out = {}
    for line in r.call("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            kv = dict(p.split("=") for p in rest.split(","))
            out[name] = (int(kv["calls"]), float(kv["usec"]))
    return out


def used_memory(r):
    """Redis' used_memory (bytes its allocator holds for data, from INFO memory)."""
    for line in r.call("INFO", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--rev", default=None, help="git revision of redis/*.lua (default: work tree)")
    ap.add_argument("--callgrind", action="store_true", help="count instructions (slow: use --n 500)")
    ap.add_argument("--request-path", action="store_true",
                    help="with --callgrind, count only a request's read, run and reply write "
                    "(readQueryFromClient, handleClientsWithPendingWrites): not serverCron, "
                    "whose ticks follow the run's length on a loaded machine")
    ap.add_argument("--pipe", type=int, default=1,
                    help="submits sent K at a time in one round trip (as a batch of requests "
                    "would be)")
    ap.add_argument("--fcall", action="store_true",
                    help="run the scripts as functions of one library (FCALL), not EVALSHA")
    ap.add_argument("--jt-cache", action="store_true",
                    help="with --fcall, j_t keeps the last second it rendered")
    ap.add_argument("--node-bytes", type=int, default=None,
                    help="redis-server --stream-node-max-bytes (default: jobgate's recommended "
                    "settings, tests/harness.py REDIS_RECOMMENDED; 4096 is Redis' own default)")
    ap.add_argument("--lib", default=None,
                    help="with --fcall, load this library file instead (a hand-made variant)")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="scriptcost.", dir=os.path.join(ROOT, "run")
                         if os.path.isdir(os.path.join(ROOT, "run")) else None)
    sock = os.path.join(d, "redis.sock")
    grind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(d, "cg.%p"),
             "--log-file=" + os.path.join(d, "valgrind.log")] if a.callgrind else []
    if a.callgrind and a.request_path:
        grind[1:1] = ["--collect-atstart=no", "--toggle-collect=readQueryFromClient",
                      "--toggle-collect=handleClientsWithPendingWritesUsingThreads"]
    instr, seen = {}, set()

    def phase(name):   # instructions since the last phase (callgrind: zero, then dump)
        if a.callgrind:
            instr[name] = callgrind_phase(p.pid, d, seen, name)
    p = subprocess.Popen(grind + ["redis-server", "--port", "0", "--unixsocket", sock, "--save", "",
                          "--appendonly", "no", "--dir", d]
                         + (["--stream-node-max-bytes", str(a.node_bytes)] if a.node_bytes
                            else list(harness.REDIS_RECOMMENDED)),
                         stdout=subprocess.DEVNULL)
    try:
        harness.wait_until(lambda: harness.accepts(sock), 60 if a.callgrind else 4,
                           "the private redis-server")
        r = harness.Redis(unix=sock, timeout=120)
        if a.fcall:   # ("FCALL", name) where the scripts are called ("EVALSHA", sha)
            lib = (open(a.lib).read() if a.lib else
                   funclib.library(a.rev, jt_cache=a.jt_cache))
            r.call("FUNCTION", "LOAD", "REPLACE", lib)
            run = {n: ("FCALL", n) for n in ("submit", "claim", "log", "complete")}
        else:
            run = {n: ("EVALSHA", r.call("SCRIPT", "LOAD", script(a.rev, n)))
                   for n in ("submit", "claim", "log", "complete")}
        q, tag = "default", "37a8eec1"
        P = "jobgate:{%s}:" % tag
        Q = P + "q:%s:" % q
        ids = ["%s.%022d" % (tag, i) for i in range(a.n)]
        r.call("CONFIG", "RESETSTAT")
        mem0 = used_memory(r)
        phase("setup")
        cpu0 = cpu(p.pid)
        flt0 = minflt(p.pid)
        old = b"-- KEYS[9]" in script(a.rev, "submit")   # before 18 arguments (9 keys)
        # 2 keys (the queue's built by the script) and created_at's text to the second
        two = b"-- KEYS[3]" not in script(a.rev, "submit")
        calls = []
        for i, jid in enumerate(ids):
            # the job object but created_at, as jobgate-submit renders it for a job queued at
            # once (ignored by a submit.lua older than that)
            before = ('{"id":"%s","queue":"%s","type":"echo","status":"queued","priority":0,'
                      '"attempts":0,"max_attempts":3,"progress":null,"created_at":' % (jid, q))
            after = (',"started_at":null,"finished_at":null,"run_at":null,"worker":null,'
                     '"result":null,"error":null,"cached":false,"cache_key":"%s",'
                     '"cancel_requested":false,"version":1}' % ("0" * 64))
            if old:
                calls.append(run["submit"] + (9, P + "job:" + jid, Q + "ready:echo",
                              Q + "delayed", Q + "seq", Q + "jobs", Q + "types", Q + "counts",
                              P + "log:" + jid, Q + "inflight:" + "0" * 64, jid, q, "echo",
                              '{"n":%d}' % i, 0, 3, 300000, 0, 0, 604800, "0" * 64, "", 10000,
                              P + "wake:" + q, 0, "", 86400, before, after))
            elif two:   # created_at's text to its second from the client's clock at the send
                def call(jid=jid, i=i, before=before, after=after):
                    now = time.time()
                    head = time.strftime('"%Y-%m-%dT%H:%M:%S.', time.gmtime(now))
                    return run["submit"] + (2, P + "job:" + jid, Q + "ready:echo", jid, q, "echo",
                                            '{"n":%d}' % i, 0, 3, 300000, 0, "0" * 64,
                                            before + head, 'Z"' + after, str(int(now)))
                calls.append(call)
            else:
                calls.append(run["submit"] + (7, P + "job:" + jid, Q + "ready:echo",
                              Q + "seq", Q + "jobs", Q + "types", Q + "counts", P + "log:" + jid,
                              jid, q, "echo", '{"n":%d}' % i, 0, 3, 300000, 0, "0" * 64, before,
                              after))
        for i in range(0, len(calls), a.pipe):   # --pipe K: K calls a round trip
            for rep in r.pipeline([c() if callable(c) else c for c in calls[i:i + a.pipe]]):
                if isinstance(rep, harness.RedisError):
                    raise rep
        cpu1 = cpu(p.pid)
        flt1 = minflt(p.pid)
        mem1 = used_memory(r)
        phase("submit")
        s1 = stats(r)
        fences = []
        for jid in ids:
            rep = r.call(*run["claim"], 4, Q + "delayed", Q + "running", Q + "counts",
                         Q + "ready:echo", P, q, "w1", 1, 30000, 1000, 1000, 86400, 10000,
                         P + "events", P + "wake:" + q)
            fences.append(rep[3][3])
        phase("claim")
        for jid, fence in zip(ids, fences):
            r.call(*run["log"], 2, P + "job:" + jid, P + "log:" + jid, jid, fence, 10000,
                   P + "events", "50", "0", "stdout", "a line")
        phase("log")
        sl0 = stats(r)
        for jid, fence in zip(ids, fences):   # a batch of lines alone: a job's common log call
            r.call(*run["log"], 2, P + "job:" + jid, P + "log:" + jid, jid, fence, 10000,
                   P + "events", "", "1", "stdout", "another line")
        phase("line")
        sl1 = stats(r)
        for jid, fence in zip(ids, fences):
            r.call(*run["complete"], 6, P + "job:" + jid, P + "log:" + jid,
                   Q + "running", Q + "delayed", Q + "counts", Q + "ready:echo", jid, fence, "done",
                   '{"n":1}', 1000, 1000, 86400, 10000, P + "events", P + "wake:" + q)
        phase("worker")
        mem2 = used_memory(r)
        s2 = stats(r)
        has_json = r.call("HEXISTS", P + "job:" + ids[0], "json") == 1
        for jid in ids:
            if has_json:
                r.call("HMGET", P + "job:" + jid, "json", "version")
            else:
                r.call("HMGET", P + "job:" + jid, *SHOWN)
        phase("read")
        s3 = stats(r)
        for jid in ids:   # nothing due, nothing to take back, nothing ready: an idle worker's
            r.call(*run["claim"], 4, Q + "delayed", Q + "running", Q + "counts",
                   Q + "ready:echo", P, q, "w1", 1, 30000, 1000, 1000, 86400, 10000,
                   P + "events", P + "wake:" + q)
        phase("idle")
    finally:
        p.terminate()
        p.wait()
        if os.environ.get("SCRIPTCOST_KEEP"):
            print("kept", d)
        else:
            shutil.rmtree(d, ignore_errors=True)

    n = a.n
    print("scripts of %s, %d jobs (usec per call: Redis' own CPU, from INFO commandstats)"
          % (a.rev or "the work tree", n))
    cmd = "fcall" if a.fcall else "evalsha"
    evalsha = s1.get(cmd, (0, 0))
    print("  submit.lua (%s) %6.1f us (redis-server's whole CPU per submit, I/O included, "
          "from /proc: %.1f us; %d a round trip)"
          % (cmd.upper(), evalsha[1] / n, (cpu1 - cpu0) * 1e6 / n, a.pipe))
    inner = {k: v for k, v in s1.items()
             if k not in ("evalsha", "fcall", "script|load", "function|load", "config|resetstat")}
    print("    inside: " + ", ".join("%s %.1f/job (%.2f us each)" % (k, v[0] / n, v[1] / v[0])
                                      for k, v in sorted(inner.items(), key=lambda x: -x[1][1])))
    e2 = s2[cmd][1] - evalsha[1] - (sl1[cmd][1] - sl0[cmd][1])   # not the lines alone
    print("  claim + log + complete  %6.1f us per job" % (e2 / n))
    hm = s3.get("hmget", (0, 0))
    hm0 = s2.get("hmget", (0, 0))
    print("  status read (%s) %5.2f us" % ("HMGET json version" if has_json else
                                           "HMGET of 19 fields", (hm[1] - hm0[1]) / n))

    print("  Redis memory per retained job (used_memory delta / jobs, %s): "
          "%.0f B queued, %.0f B after claim, 2 log calls and complete"
          % ("--stream-node-max-bytes %d" % a.node_bytes if a.node_bytes
             else " ".join(harness.REDIS_RECOMMENDED), (mem1 - mem0) / n, (mem2 - mem0) / n))
    if not a.callgrind:
        print("  redis-server's minor page faults per submit (fresh pages, from /proc): %.2f"
              % ((flt1 - flt0) / n))
    if a.callgrind:
        print("  instructions per call (callgrind, %s): submit %d, claim %d, "
              "log (a line and a progress) %d, complete %d, status read %d, "
              "log (a line alone) %d, claim with nothing to do %d"
              % ((("request path" if a.request_path else "whole redis-server"),)
                 + tuple(instr[k] / n for k in ("submit", "claim", "log", "worker", "read",
                                                "line", "idle"))))


if __name__ == "__main__":
    main()
