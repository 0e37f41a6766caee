#!/usr/bin/env python3
"""worker.py — jobgate-worker throughput (issue 4's benchmark): end-to-end jobs/s for the `echo`
demo type on 1 and on 4 workers, and the Redis commands the workers send per job, read from
INFO commandstats. Prints figures; asserts nothing.

For each run: a private redis-server, N echo jobs created with submit.lua (pipelined, before the
clock starts: the web front is measured by bench.py), then the workers are started and the clock
runs until Redis counts N jobs done. Every command Redis ran in that window came from the workers
(plus this script's one HGET per poll, subtracted).

    python3 bench/worker.py
Environment: BENCH_JOBS (3000), BENCH_CONCURRENCY (per worker, 8), BENCH_WORKERS ("1,4"),
JOBGATE_BUILD (build).
"""

import base64
import hashlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import harness  # noqa: E402

JOBS = int(os.environ.get("BENCH_JOBS", "3000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
WORKERS = [int(x) for x in os.environ.get("BENCH_WORKERS", "1,4").split(",") if x]
QUEUE, TYPE, P = "bench", "echo", "jobgate"


def tag(queue):
    return hashlib.sha256(queue.encode()).hexdigest()[:8]


def new_id(queue):
    return tag(queue) + "." + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def submit_all(r, n):
    src = open(os.path.join(ROOT, "redis", "submit.lua")).read()
    sha = r.call("SCRIPT", "LOAD", src)
    t = tag(QUEUE)
    qk = "%s:{%s}:q:%s:" % (P, t, QUEUE)
    cmds = []
    for i in range(n):
        jid = new_id(QUEUE)
        payload = '{"n":%d}' % i
        keys = ["%s:{%s}:job:%s" % (P, t, jid), qk + "ready:" + TYPE, qk + "delayed", qk + "seq",
                qk + "jobs", qk + "types", qk + "counts", "%s:{%s}:log:%s" % (P, t, jid)]
        argv = [jid, QUEUE, TYPE, payload, "0", "3", "300000", "0", "0", "604800", "0" * 64, "",
                "10000", "%s:wake:%s" % (P, QUEUE)]
        cmds.append(["EVALSHA", sha, str(len(keys))] + keys + argv)
    for i in range(0, n, 500):
        for rep in r.pipeline(cmds[i:i + 500]):
            if isinstance(rep, Exception):
                raise rep
    return qk + "counts"


def commandstats(r):
    out = {}
    for line in r.call("INFO", "commandstats").splitlines():
        m = re.match(r"^cmdstat_([^:]+):calls=(\d+)", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def run(nworkers):
    d = tempfile.mkdtemp(prefix="jg-bench-worker-")
    sock = os.path.join(d, "redis.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBGATE_")}
    procs = []
    try:
        redis = harness.Proc("redis", ["redis-server", "--port", "0", "--unixsocket", sock,
                                       "--save", "", "--appendonly", "no", "--dir", d,
                                       "--logfile", ""], env, os.path.join(d, "redis.log"))
        procs.append(redis)
        r = harness.Redis(unix=sock)
        harness.wait_until(lambda: r.call("PING") == "PONG", 10, "redis")
        counts = submit_all(r, JOBS)
        r.call("CONFIG", "RESETSTAT")
        wenv = dict(env, REDIS_URL="unix://" + sock)
        t0 = time.monotonic()
        for i in range(nworkers):
            procs.append(harness.Proc("worker", [
                harness.binary("worker"), "--queue", QUEUE, "--type",
                "echo=" + os.path.join(ROOT, "deploy", "examples", "jobs", "echo.sh"),
                "--concurrency", str(CONCURRENCY)], wenv, os.path.join(d, "worker-%d.log" % i)))
        polls = 0
        while True:
            polls += 1
            done = int(r.call("HGET", counts, "done:" + TYPE) or 0)
            if done >= JOBS:
                break
            if time.monotonic() - t0 > 600:
                raise RuntimeError("only %d of %d jobs done after 600 s" % (done, JOBS))
            time.sleep(0.02)
        took = time.monotonic() - t0
        stats = commandstats(r)
        stats["hget"] = stats.get("hget", 0) - polls
        stats["info"] = stats.get("info", 0) - 1
        stats = {k: v for k, v in stats.items() if v > 0}
        total = sum(stats.values())
        # what the workers send: script calls, plus a few heartbeat/subscribe/load commands
        # (commandstats also counts the commands a script runs inside Redis: listed apart)
        sent = stats.get("evalsha", 0) + stats.get("script|load", 0) + stats.get("subscribe", 0)
        print("workers=%d concurrency=%d jobs=%d: %.0f jobs/s (%.2f s incl. worker start-up); "
              "%.2f Redis calls per job from the workers (EVALSHA %.2f); %.2f commands per job "
              "inside Redis, scripts' own included (%s)"
              % (nworkers, CONCURRENCY, JOBS, JOBS / took, took, sent / JOBS,
                 stats.get("evalsha", 0) / JOBS, total / JOBS,
                 ", ".join("%s %.2f" % (k, v / JOBS) for k, v in sorted(stats.items()))),
              flush=True)
    finally:
        for p in reversed(procs):
            p.stop(signal.SIGTERM, 40)
        shutil.rmtree(d, ignore_errors=True)


def main():
    if not os.access(harness.binary("worker"), os.X_OK):
        sys.exit("bench/worker.py: %s is not built (run make)" % harness.binary("worker"))
    print("# jobgate-worker: %d echo jobs per run, %d cores" % (JOBS, os.cpu_count()), flush=True)
    for n in WORKERS:
        run(n)


if __name__ == "__main__":
    main()
