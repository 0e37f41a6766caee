#!/usr/bin/env python3
"""logcost.py — what a long job log costs Redis at each stream-node-max-bytes: memory, and
instructions per write (log.lua as a worker calls it) and per read (XRANGE as jobgate-logs
sends it).

For each setting (--node-bytes, default 4096 1024 512 256; 4096 is Redis' default) and each line
size (--sizes, default 60 and 1024 bytes): a private redis-server (unix socket, no persistence)
started with --stream-node-max-bytes B; one job made by submit.lua and claimed by claim.lua, then
--entries lines (default 10,000, the default JOBGATE_LOG_MAX) written by log.lua, --batch lines a
call (default 1: a worker sends one call per loop turn in which the job wrote, often one line;
--batch 100 for a chatty job), then --extra lines more (default 1,000) past the cap, where each
XADD also trims (MAXLEN log_max, exact). Then the log is read back as jobgate-logs reads it
(handlers/logs.c read_log: `XRANGE log (<cursor> + COUNT n`, n = 101 for a page of the default
limit, 100 for an SSE stream's read):
  - pages from the start: the whole log, page after page, each after the last page's cursor;
  - after a cursor in the middle: COUNT 100 after each of 100 cursors spread over the log
    (an SSE client resuming with Last-Event-ID);
  - the tail: the one newest entry after the one before it (a live stream's read after a
    `log` notification), 1,000 times;
  - XREAD COUNT 100 STREAMS log <cursor>, after the same 100 cursors (what a reader that used
    XREAD would pay; jobgate-logs uses XRANGE).
Prints the log's memory (MEMORY USAGE, and its stream nodes from XINFO STREAM) and, with
--callgrind (Redis under valgrind's callgrind, only the request path counted: read, run, reply
write), the instructions per call of each phase. Figures are repeatable; no timing is printed.

    /usr/bin/python3 bench/logcost.py [--node-bytes "4096 512"] [--sizes "60 1024"]
                                      [--entries 10000] [--batch 1] [--extra 1000] [--callgrind]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import harness  # noqa: E402  (the RESP client)
from measure import callgrind_phase  # noqa: E402


def script(name):
    with open(os.path.join(ROOT, "redis", name + ".lua"), "rb") as f:
        return f.read()


def used_memory(r):
    """Redis' used_memory (bytes its allocator holds for data, from INFO memory)."""
    for line in r.call("INFO", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    return 0


def run_one(a, node_bytes, size):
    """One redis-server at node_bytes, one log of lines of size bytes. Returns {figure: value}."""
    d = tempfile.mkdtemp(prefix="logcost.", dir=os.path.join(ROOT, "run")
                         if os.path.isdir(os.path.join(ROOT, "run")) else None)
    sock = os.path.join(d, "redis.sock")
    grind = []
    if a.callgrind:
        grind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(d, "cg.%p"),
                 "--log-file=" + os.path.join(d, "valgrind.log"), "--collect-atstart=no",
                 "--toggle-collect=readQueryFromClient",
                 "--toggle-collect=handleClientsWithPendingWritesUsingThreads"]
    p = subprocess.Popen(grind + ["redis-server", "--port", "0", "--unixsocket", sock,
                                  "--save", "", "--appendonly", "no", "--dir", d,
                                  "--stream-node-max-bytes", str(node_bytes)],
                         stdout=subprocess.DEVNULL)
    out, seen = {}, set()

    def phase(name, calls):   # instructions per call since the last phase (zero, then dump)
        if not a.callgrind:
            return
        total = callgrind_phase(p.pid, d, seen, name)
        out[name] = total / calls if calls else 0

    try:
        harness.wait_until(lambda: harness.accepts(sock), 60 if a.callgrind else 4,
                           "the private redis-server")
        r = harness.Redis(unix=sock, timeout=120)
        sha = {n: r.call("SCRIPT", "LOAD", script(n)) for n in ("submit", "claim", "log")}
        q, tag = "default", "37a8eec1"
        P = "jobgate:{%s}:" % tag
        Q = P + "q:%s:" % q
        jid = "%s.%022d" % (tag, 1)
        log_key = P + "log:" + jid
        # submit.lua as jobgate-submit calls it for a plain job (the script renders the object)
        r.call("EVALSHA", sha["submit"], 2, P + "job:" + jid, Q + "ready:echo", jid, q, "echo",
               "{}", 0, 3, 300000, 0, "0" * 64, "", "", "")
        rep = r.call("EVALSHA", sha["claim"], 4, Q + "delayed", Q + "running", Q + "counts",
                     Q + "ready:echo", P, q, "w1", 1, 30000, 1000, 1000, 86400, a.log_max,
                     P + "events", P + "wake:" + q)
        fence = rep[3][3]
        phase("setup", 0)

        def line(i):
            head = "line %06d " % i
            return head + "x" * (size - len(head))

        def write(first, count):
            calls = 0
            for b in range(first, first + count, a.batch):
                n = min(a.batch, first + count - b)
                args = []
                for i in range(b, b + n):
                    args += ["stdout", line(i)]
                rep = r.call("EVALSHA", sha["log"], 2, P + "job:" + jid, log_key, jid, fence,
                             a.log_max, P + "events", "", str(b), *args)
                if rep[0] != 1:
                    raise SystemExit("log.lua refused: %r" % (rep,))
                calls += 1
            return calls

        used0 = used_memory(r)
        calls = write(0, a.entries)
        phase("write", calls)
        out["calls"] = calls
        out["mem"] = int(r.call("MEMORY", "USAGE", log_key, "SAMPLES", "0"))
        out["used"] = used_memory(r) - used0
        info = r.call("XINFO", "STREAM", log_key)
        info = dict(zip(info[::2], info[1::2]))
        out["nodes"] = info["radix-tree-keys"]
        out["len"] = info["length"]
        if a.extra:
            calls = write(a.entries, a.extra)
            phase("capped", calls)
            out["used_capped"] = used_memory(r) - used0
        # pages from the start, as a polling client pages through the log (limit 100 -> COUNT 101)
        cursor, pages, got = "0-0", 0, 0
        while True:
            rep = r.call("XRANGE", log_key, "(" + cursor, "+", "COUNT", "101")
            pages += 1
            if not rep:
                break
            got += min(len(rep), 100)
            cursor = rep[min(len(rep), 100) - 1][0]
            if len(rep) <= 100:
                break
        phase("pages", pages)
        out["npages"] = pages
        ids = [e[0] for e in r.call("XRANGE", log_key, "-", "+")]
        phase("ignored", 0)
        spread = [ids[i * len(ids) // 100] for i in range(100)]
        for c in spread:   # an SSE client resuming after its Last-Event-ID (COUNT 100)
            r.call("XRANGE", log_key, "(" + c, "+", "COUNT", "100")
        phase("resume", len(spread))
        for _ in range(1000):   # a live stream's read after a notification: the newest entry
            rep = r.call("XRANGE", log_key, "(" + ids[-2], "+", "COUNT", "100")
        phase("tail", 1000)
        for c in spread:
            r.call("XREAD", "COUNT", "100", "STREAMS", log_key, c)
        phase("xread", len(spread))
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node-bytes", default="4096 1024 512 256")
    ap.add_argument("--sizes", default="60 1024")
    ap.add_argument("--entries", type=int, default=10000)
    ap.add_argument("--extra", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--log-max", type=int, default=10000)
    ap.add_argument("--callgrind", action="store_true")
    a = ap.parse_args()
    print("a long log: %d lines then %d past the cap of %d, %d a log.lua call; Redis %s"
          % (a.entries, a.extra, a.log_max, a.batch,
             subprocess.run(["redis-server", "--version"], capture_output=True,
                            text=True).stdout.split()[2]))
    print("log bytes: used_memory's growth over the writes (allocations as made, a node's unused "
          "preallocation included); B/entry: that / entries; MEMORY USAGE: what Redis reports "
          "for the key; capped: used_memory's growth after the lines past the cap")
    head = ("%-6s %-5s %7s %10s %8s %12s %10s" % ("line", "node", "nodes", "log bytes", "B/entry",
                                                  "MEMORY USAGE", "capped"))
    if a.callgrind:
        head += (" | instr/call: %8s %8s %9s %9s %7s %9s"
                 % ("write", "capped", "page", "resume", "tail", "xread"))
    print(head)
    for size in (int(s) for s in a.sizes.split()):
        for nb in (int(b) for b in a.node_bytes.split()):
            o = run_one(a, nb, size)
            row = ("%-6d %-5d %7d %10d %8.0f %12d %10s"
                   % (size, nb, o["nodes"], o["used"], o["used"] / o["len"], o["mem"],
                      o.get("used_capped", "-")))
            if a.callgrind:
                row += (" | %21.0f %8.0f %9.0f %9.0f %7.0f %9.0f"
                        % (o["write"], o.get("capped", 0), o["pages"], o["resume"], o["tail"],
                           o["xread"]))
            print(row, flush=True)


if __name__ == "__main__":
    main()
