#!/usr/bin/env python3
"""wakecost.py — where jobgate-status' kernel time per GET goes: GET /api/jobs/{id} under wrk
behind nginx, per request: CPU µs of jobgate-status, Redis and nginx (from /proc), context
switches of jobgate-status and Redis (all their threads, /proc/PID/task/*/status), and with perf
(when installed) system calls by kind (perf stat on the syscalls:sys_enter_* tracepoints) and how
many connections each wake of a request thread took (perf record of syscalls:sys_exit_epoll_wait,
its return value). Figures on a shared machine are noisy: read the spread of the rounds.

Each configuration is a build and a thread count ("build:2" runs build/ with --threads 2,
"build" with the program's default). By default the configurations take turns, one stack at a
time; BENCH_SIDE_BY_SIDE=1 runs them all at the same time instead, each stack under its own wrk,
so that every configuration sees the same load (then only the CPU and switch columns; the
per-process perf counts would see the other stacks' load too, and are skipped).

    BENCH_CONFIGS="/tmp/main/build:8 build" BENCH_ROUNDS=3 /usr/bin/python3 bench/wakecost.py
    BENCH_CONFIGS="build:8 build:2" BENCH_SIDE_BY_SIDE=1 /usr/bin/python3 bench/wakecost.py

Environment: BENCH_CONFIGS ("build"), BENCH_ROUNDS (3), BENCH_DURATION (s per wrk run, 5),
BENCH_CONNECTIONS (64), BENCH_SIDE_BY_SIDE (0)."""

import collections
import os
import re
import shutil
import subprocess
import sys
import threading

from measure import cpu_s, env, harness, tree, wrk

CONFIGS = env("BENCH_CONFIGS", "build").split()
ROUNDS = env("BENCH_ROUNDS", 3)
DURATION = env("BENCH_DURATION", 5)
CONNS = env("BENCH_CONNECTIONS", 64)
SIDE = env("BENCH_SIDE_BY_SIDE", 0)
SYSCALLS = ("recvfrom", "write", "epoll_ctl", "epoll_wait", "read", "poll", "futex")


def switches(pid):
    """Voluntary + involuntary context switches of every thread of pid so far."""
    n = 0
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, t)) as f:
            n += sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)
    return n


def hmgets(s):
    """GETs served so far: the HMGETs Redis ran (one per GET)."""
    info = s.redis("INFO", "commandstats")
    if isinstance(info, bytes):
        info = info.decode()
    m = re.search(r"cmdstat_hmget:calls=(\d+)", info)
    return int(m.group(1)) if m else 0


class Run:
    """One configuration's stack, its URL and its processes."""

    def __init__(self, config):
        build, _, threads = config.partition(":")
        harness.BUILD = os.path.join(harness.ROOT, build)
        self.name = config
        self.s = harness.Stack(name="wakecost", threads=int(threads or 0),
                               programs=("status", "submit"))
        self.s.__enter__()
        job = self.s.submit(type="echo", queue="bench")
        self.url = "http://127.0.0.1:%d/api/jobs/%s" % (self.s.port, job["id"])
        self.pids = {"status": self.s.program_pids("status")[0], "redis": self.s.redis_proc.pid}
        self.nginx = tree(self.s.nginx_proc.pid)
        wrk(self.url, 1, CONNS, 2)   # warm: nginx's upstream connections made

    def start(self):
        self.cpu0 = {k: cpu_s(p) for k, p in self.pids.items()}
        self.cs0 = {k: switches(p) for k, p in self.pids.items()}
        self.ng0 = cpu_s(self.nginx)
        self.h0 = hmgets(self.s)

    def row(self):
        n = max(1, hmgets(self.s) - self.h0)
        out = {"nginx us": 1e6 * (cpu_s(self.nginx) - self.ng0) / n}
        for k, p in self.pids.items():
            out[k + " us"] = 1e6 * (cpu_s(p) - self.cpu0[k]) / n
            out[k + " cs"] = (switches(p) - self.cs0[k]) / n
        return out, n

    def close(self):
        self.s.__exit__(None, None, None)


def perf_counts(run, out_dir):
    """perf stat of the two processes and perf record of the request threads' epoll_wait returns,
    started now; returns a function that stops them and gives their figures per GET."""
    evs = ",".join("syscalls:sys_enter_" + c for c in SYSCALLS)
    procs = []
    for k, pid in run.pids.items():
        path = os.path.join(out_dir, "stat-%s.txt" % k)
        procs.append((k, path, subprocess.Popen(
            ["perf", "stat", "-x", ",", "-o", path, "-e", evs, "-p", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    rec = os.path.join(out_dir, "wakes.data")
    procs.append(("wakes", rec, subprocess.Popen(
        ["perf", "record", "-q", "-o", rec, "-e", "syscalls:sys_exit_epoll_wait", "-p",
         str(run.pids["status"])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))

    def stop(n):
        got = {}
        for k, path, p in procs:
            p.send_signal(2)
            p.wait(30)
            if k == "wakes":
                text = subprocess.run(["perf", "script", "-i", path], capture_output=True,
                                      text=True).stdout
                hist = collections.Counter(
                    int(m.group(1), 0) for m in
                    re.finditer(r"sys_exit_epoll_wait: (0x[0-9a-f]+|\d+)", text))
                wakes = sum(v for c, v in hist.items() if c > 0)
                got["per wake"] = sum(c * v for c, v in hist.items()) / max(1, wakes)
                got["1 a wake %"] = 100.0 * hist[1] / max(1, wakes)
                got["16+ %"] = 100.0 * sum(v for c, v in hist.items() if c >= 16) / max(1, wakes)
                continue
            total = 0.0
            with open(path) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) > 2 and re.match(r"^[\d.]+$", parts[0]):
                        name = parts[2].replace("syscalls:sys_enter_", "")
                        total += float(parts[0])
                        if k == "status":
                            got[name] = float(parts[0]) / n
            got[k + " sys"] = total / n
        return got
    return stop


def main():
    harness.install_signal_handlers()
    perf = shutil.which("perf") and not SIDE
    cols = ["nginx us", "status us", "redis us", "status cs", "redis cs"]
    if perf:
        cols += ["status sys", "redis sys"] + list(SYSCALLS) + ["per wake", "1 a wake %", "16+ %"]
    print("wakecost: GET /api/jobs/{id}, wrk -t2 -c%d -d%ds, %s, per GET (noisy)"
          % (CONNS, DURATION, "side by side" if SIDE else "one stack at a time"))
    print("%-22s %5s %7s " % ("config", "round", "rps") + " ".join("%10s" % c[:10] for c in cols),
          flush=True)
    runs = []
    try:
        if SIDE:
            runs = [Run(c) for c in CONFIGS]
        for r in range(ROUNDS):
            if SIDE:
                results = [{} for _ in runs]
                for run in runs:
                    run.start()
                ts = [threading.Thread(target=lambda run=run, o=o: o.update(
                    wrk(run.url, DURATION, CONNS, 2))) for run, o in zip(runs, results)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                rows = [(run.name, res["rps"], run.row()[0]) for run, res in zip(runs, results)]
            else:
                rows = []
                for c in CONFIGS:
                    run = Run(c)
                    try:
                        run.start()
                        stop = perf_counts(run, run.s.dir) if perf else None
                        res = wrk(run.url, DURATION, CONNS, 2)
                        row, n = run.row()
                        if stop:
                            row.update(stop(n))
                        rows.append((c, res["rps"], row))
                    finally:
                        run.close()
            for name, rps, row in rows:
                print("%-22s %5d %7.0f " % (name[-22:], r, rps)
                      + " ".join("%10.2f" % row.get(c, float("nan")) for c in cols), flush=True)
    finally:
        for run in runs:
            run.close()


if __name__ == "__main__":
    sys.exit(main())
