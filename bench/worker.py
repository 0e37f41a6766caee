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
BENCH_WORKER_LIMIT (s a run may take at most, 60), JOBGATE_BUILD (build), TMPDIR (where the
workers make the jobs' directories, as in production; its file system is printed), BENCH_WORKER_PREFIX
(a command put before each worker's, for profiling: "strace -c -f -o /tmp/w.strace"; %i is the
worker's number; the CPU figures are then the prefix's).
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
from measure import cpu_s, submit_script_calls  # noqa: E402

JOBS = int(os.environ.get("BENCH_JOBS", "3000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
WORKERS = [int(x) for x in os.environ.get("BENCH_WORKERS", "1,4").split(",") if x]
RUN_LIMIT = int(os.environ.get("BENCH_WORKER_LIMIT", "60"))   # s per run at most
PREFIX = os.environ.get("BENCH_WORKER_PREFIX", "").split()
QUEUE, TYPE, P = "bench", "echo", "jobgate"


def tag(queue):
    return hashlib.sha256(queue.encode()).hexdigest()[:8]


def new_id(queue):
    return tag(queue) + "." + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def submit_all(r, n):
    sha = r.call("SCRIPT", "LOAD", open(os.path.join(ROOT, "redis", "submit.lua")).read())
    cmds = submit_script_calls(sha, QUEUE, TYPE, [new_id(QUEUE) for _ in range(n)],
                                       payload=lambda i: '{"n":%d}' % i)
    for i in range(0, n, 500):
        for rep in r.pipeline(cmds[i:i + 500]):
            if isinstance(rep, Exception):
                raise rep
    return "%s:{%s}:q:%s:counts" % (P, tag(QUEUE), QUEUE)


def commandstats(r):
    out = {}
    for line in r.call("INFO", "commandstats").splitlines():
        m = re.match(r"^cmdstat_([^:]+):calls=(\d+)", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def keepers(pids):
    """The workers' keeper processes (their children still named jobgate-worker)."""
    out = []
    for pid in pids:
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for k in kids:
            try:
                with open("/proc/%d/comm" % k) as f:
                    if f.read().strip() == "jobgate-worker":
                        out.append(k)
            except OSError:
                pass
    return out


def fs_type(path):
    """The file system type of path (ext4, tmpfs...), from /proc/mounts: the job directories'
    file system weighs on the worker's CPU per job (docs/worker.md, Performance)."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def run(nworkers):
    d = tempfile.mkdtemp(prefix="jg-bench-worker-")
    sock = os.path.join(d, "redis.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBGATE_")}
    procs = []
    try:
        redis = harness.Proc("redis", ["redis-server", "--port", "0", "--unixsocket", sock,
                                       "--save", "", "--appendonly", "no", "--dir", d,
                                       "--logfile", ""] + list(harness.REDIS_RECOMMENDED),
                             env, os.path.join(d, "redis.log"))
        procs.append(redis)
        r = harness.Redis(unix=sock)
        harness.wait_until(lambda: r.call("PING") == "PONG", 10, "redis")
        counts = submit_all(r, JOBS)
        r.call("CONFIG", "RESETSTAT")
        redis_cpu0 = cpu_s(redis.pid)
        wenv = dict(env, REDIS_URL="unix://" + sock)
        t0 = time.monotonic()
        for i in range(nworkers):
            procs.append(harness.Proc("worker", [a.replace("%i", str(i)) for a in PREFIX] + [
                harness.binary("worker"), "--queue", QUEUE, "--type",
                "echo=" + os.path.join(ROOT, "deploy", "examples", "jobs", "echo.sh"),
                "--concurrency", str(CONCURRENCY)], wenv, os.path.join(d, "worker-%d.log" % i)))
        polls = 0
        while True:
            polls += 1
            done = int(r.call("HGET", counts, "done:" + TYPE) or 0)
            if done >= JOBS:
                break
            if time.monotonic() - t0 > RUN_LIMIT:
                raise RuntimeError("only %d of %d jobs done after %d s" % (done, JOBS, RUN_LIMIT))
            time.sleep(0.02)
        took = time.monotonic() - t0
        wpids = [p.pid for p in procs[1:]]
        cpu = {"worker": cpu_s(wpids + keepers(wpids)), "jobs": cpu_s(wpids, children=True),
               "redis": cpu_s(redis.pid) - redis_cpu0}
        stats = commandstats(r)
        stats["hget"] = stats.get("hget", 0) - polls
        stats["info"] = stats.get("info", 0) - 1
        stats = {k: v for k, v in stats.items() if v > 0 and k != "config|resetstat"}
        # what the workers send: script calls, plus a few heartbeat/subscribe/load commands
        # (commandstats also counts the commands a script runs inside Redis: listed apart)
        sent = stats.get("evalsha", 0) + stats.get("script|load", 0) + stats.get("subscribe", 0)
        return {"workers": nworkers, "jobs_s": JOBS / took, "took": took, "sent": sent / JOBS,
                "evalsha": stats.get("evalsha", 0) / JOBS, "inside": sum(stats.values()) / JOBS,
                "stats": stats, "cpu": cpu}
    finally:
        for p in reversed(procs):
            p.stop(signal.SIGTERM, 40)
        shutil.rmtree(d, ignore_errors=True)


def main():
    if not os.access(harness.binary("worker"), os.X_OK):
        sys.exit("bench/worker.py: %s is not built (run make)" % harness.binary("worker"))
    harness.install_signal_handlers()
    print("# jobgate-worker: %d echo jobs per run, concurrency %d per worker, %d CPUs, load %s;"
          " job directories in %s (%s)"
          % (JOBS, CONCURRENCY, os.cpu_count() or 0,
             " ".join("%.2f" % x for x in os.getloadavg()), tempfile.gettempdir(),
             fs_type(tempfile.gettempdir())), flush=True)
    results = []
    for n in WORKERS:
        try:
            results.append(run(n))
        except (RuntimeError, AssertionError, OSError, harness.RedisError) as e:
            print("  workers=%d: no figure (%s)" % (n, e), flush=True)
    if not results:
        return
    print("  %-8s %10s %9s %17s %13s %16s %s" % (
        "workers", "jobs/s", "seconds", "calls/job (sent)", "EVALSHA/job", "cmds/job inside",
        "CPU us/job: worker jobs redis"))
    for r in results:
        c = r["cpu"]
        print("  %-8d %10.0f %9.2f %17.2f %13.2f %16.2f %16.0f %5.0f %5.0f" % (
            r["workers"], r["jobs_s"], r["took"], r["sent"], r["evalsha"], r["inside"],
            c["worker"] * 1e6 / JOBS, c["jobs"] * 1e6 / JOBS, c["redis"] * 1e6 / JOBS))
    print("  (seconds include the workers' start-up; calls sent = EVALSHA + SCRIPT LOAD + SUBSCRIBE"
          " by the workers; inside = every command Redis ran, the scripts' own included;"
          " CPU from /proc: the workers themselves with their keepers, the job processes they reaped,"
          " Redis)")
    for r in results:
        print("  workers=%d, per job inside Redis: %s" % (r["workers"], ", ".join(
            "%s %.2f" % (k, v / JOBS) for k, v in sorted(r["stats"].items()) if v / JOBS >= 0.01)))


if __name__ == "__main__":
    main()
