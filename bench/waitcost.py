#!/usr/bin/env python3
"""waitcost.py — what JOBGATE_REDIS_WAIT_REPLICAS=1 costs (docs/redis.md "Failover"): POST /jobs
through nginx (wrk) and end-to-end echo jobs/s of one worker, with the setting off and on, on one
Redis with one replica (a redis-server --replicaof it, over loopback TCP). Prints figures; asserts
nothing. On a shared 2-core machine the figures are noisy: compare the two lines of one run.
    python3 bench/waitcost.py
Environment: BENCH_DURATION (s per wrk run, 5), BENCH_CONNECTIONS (16), BENCH_JOBS (1000),
BENCH_CONCURRENCY (8), JOBGATE_BUILD (build).
"""
import hashlib
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import harness  # noqa: E402
from measure import wrk  # noqa: E402

DURATION = int(os.environ.get("BENCH_DURATION", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
JOBS = int(os.environ.get("BENCH_JOBS", "1000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
POST_LUA = """wrk.method = "POST"
wrk.body = '{"type":"echo","queue":"waitbench","payload":{"n":1}}'
wrk.headers["Content-Type"] = "application/json"
"""


def replica_of(s):
    port = harness.free_port()
    d = os.path.join(s.dir, "replica")
    os.makedirs(d)
    p = harness.Proc("replica", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                 "--replicaof", "127.0.0.1", str(s.redis_port), "--save", "",
                                 "--appendonly", "no", "--dir", d, "--logfile", ""]
                     + list(harness.REDIS_RECOMMENDED),
                     dict(os.environ), os.path.join(d, "redis.log"))
    r = harness.Redis(port=port, timeout=5)
    harness.wait_until(lambda: "master_link_status:up" in r.call("INFO", "replication"), 15,
                       "replica in sync")
    return p


def run(wait):
    env = {"JOBGATE_REDIS_WAIT_REPLICAS": "1", "JOBGATE_REDIS_WAIT_MS": "1000"} if wait else {}
    with harness.Stack(env=env, programs=("submit", "status"), name="waitcost",
                       redis_kind="single") as s:
        rep = replica_of(s)
        try:
            lua = os.path.join(s.dir, "post.lua")
            with open(lua, "w") as f:
                f.write(POST_LUA)
            post = wrk("http://127.0.0.1:%d/api/jobs" % s.port, DURATION, CONNECTIONS, 2, lua)
            r = harness.Redis(unix=s.redis_sock)
            r.call("FLUSHALL")
            queue = "waitjobs"   # the jobs made through POST /api/jobs before the clock starts
            for i in range(JOBS):
                s.submit(type="echo", queue=queue, payload={"n": i})
            counts = "jobgate:{%s}:q:%s:counts" % (hashlib.sha256(queue.encode()).hexdigest()[:8],
                                                  queue)
            t0 = time.monotonic()
            s.start_worker(queues=[queue], concurrency=CONCURRENCY, types={
                "echo": os.path.join(ROOT, "deploy", "examples", "jobs", "echo.sh")})
            while int(r.call("HGET", counts, "done:echo") or 0) < JOBS:
                if time.monotonic() - t0 > 120:
                    raise RuntimeError("jobs not done in 120 s")
                time.sleep(0.02)
            took = time.monotonic() - t0
            return post, JOBS / took
        finally:
            rep.stop(signal.SIGKILL, 5)


def main():
    print("bench: WAIT cost, one Redis + one replica (loopback), wrk -c%d -d%ds POST /api/jobs, "
          "%d echo jobs on one worker (concurrency %d); noisy (shared 2-core machine)"
          % (CONNECTIONS, DURATION, JOBS, CONCURRENCY), flush=True)
    for wait in (False, True):
        post, jobs_s = run(wait)
        print("  %-32s POST %7.0f rps (p50 %s ms, p99 %s ms, non-2xx %d)   echo %6.0f jobs/s"
              % ("JOBGATE_REDIS_WAIT_REPLICAS=%d" % (1 if wait else 0), post["rps"], post["p50"],
                 post["p99"], post["non2xx"], jobs_s), flush=True)


if __name__ == "__main__":
    main()
