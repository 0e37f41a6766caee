"""batchcost.py — what serving requests that arrive together together saves (server.c's batches):
GET /api/jobs/{id} under wrk at several connection counts, behind nginx, for one or more builds
taken in turn (alternating, so that each build sees the same minutes of a noisy machine). Per
request, for jobgate-status and Redis: CPU µs (from /proc), and with perf (when installed) system
calls and context switches (perf stat -e task-clock,context-switches,raw_syscalls:sys_enter on
the process). Figures on a shared machine are noisy: read the spread of the rounds.

    BENCH_BUILDS="/tmp/main/build build" BENCH_ROUNDS=3 /usr/bin/python3 bench/batchcost.py

Environment: BENCH_BUILDS (build dirs, "build"), BENCH_ROUNDS (3), BENCH_DURATION (s per wrk
run, 5), BENCH_CONNS ("32 64"), BENCH_THREADS (program threads, 4), BENCH_PATH ("get" or
"post": POST /api/jobs instead)."""

import os
import re
import shutil
import subprocess
import sys

from measure import cpu_s, env, harness, wrk

BUILDS = env("BENCH_BUILDS", "build").split()
ROUNDS = env("BENCH_ROUNDS", 3)
DURATION = env("BENCH_DURATION", 5)
CONNS = [int(x) for x in env("BENCH_CONNS", "32 64").split()]
THREADS = env("BENCH_THREADS", 4)
PATH = env("BENCH_PATH", "get")

POST_LUA = """
wrk.method = "POST"
wrk.body = '{"type":"echo","queue":"bench","payload":{"n":1}}'
wrk.headers["Content-Type"] = "application/json"
"""


def perf_start(pid, out):
    return subprocess.Popen(["perf", "stat", "-x", ",", "-o", out, "-e",
                             "task-clock,context-switches,raw_syscalls:sys_enter", "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_read(p, out):
    p.send_signal(2)
    p.wait(10)
    got = {}
    with open(out) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 2 and re.match(r"^[\d.]+$", parts[0]):
                got[parts[2]] = float(parts[0])
    return got


def one(build, conns):
    harness.BUILD = os.path.join(harness.ROOT, build)
    program = "submit" if PATH == "post" else "status"
    with harness.Stack(name="batchcost", threads=THREADS, programs=("status", "submit")) as s:
        job = s.submit(type="echo", queue="bench")
        url = "http://127.0.0.1:%d/api/jobs" % s.port
        script = None
        if PATH == "post":
            script = os.path.join(s.dir, "post.lua")
            with open(script, "w") as f:
                f.write(POST_LUA)
        else:
            url += "/" + job["id"]
        wrk(url, 1, conns, 2, script)   # warm: connections kept
        pids = {"program": s.program_pids(program)[0], "redis": s.redis_proc.pid}
        before = {k: cpu_s(p) for k, p in pids.items()}
        perfs = {}
        if shutil.which("perf"):
            for k, p in pids.items():
                out = os.path.join(s.dir, "perf-%s.txt" % k)
                perfs[k] = (perf_start(p, out), out)
        res = wrk(url, DURATION, conns, 2, script)
        stats = {k: perf_read(*v) for k, v in perfs.items()}
        n = max(1, res["requests"])
        row = {"rps": res["rps"], "bad": res["non2xx"] + res["errors"]}
        for k, p in pids.items():
            row[k + " us"] = 1e6 * (cpu_s(p) - before[k]) / n
            st = stats.get(k, {})
            row[k + " sys"] = st.get("raw_syscalls:sys_enter", float("nan")) / n
            row[k + " cs"] = st.get("context-switches", float("nan")) / n
        return row


def main():
    harness.install_signal_handlers()
    cols = ["rps", "program us", "redis us", "program sys", "redis sys", "program cs",
            "redis cs", "bad"]
    print("batchcost: %s, wrk -t2 -d%ds, program --threads %d, per request (noisy)"
          % ("POST /api/jobs" if PATH == "post" else "GET /api/jobs/{id}", DURATION, THREADS))
    print("%-24s %5s %6s " % ("build", "conns", "round") + " ".join("%11s" % c for c in cols),
          flush=True)
    for conns in CONNS:
        for r in range(ROUNDS):
            for b in BUILDS:
                row = one(b, conns)
                print("%-24s %5d %6d " % (b[-24:], conns, r)
                      + " ".join("%11.1f" % row[c] for c in cols), flush=True)


if __name__ == "__main__":
    sys.exit(main())
