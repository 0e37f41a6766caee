#!/usr/bin/env python3
"""bench.py — `make bench`: throughput and latency of jobgate behind nginx, next to nginx's own
`return 200` measured in the same run (the ceiling), and the long-poll tests of longpoll.py (one
waiter among 1,000 idle ones; 1,000 waiters of one job woken by one change); jobgate-admin's /health and /stats (10
queues, 4 workers) beside the status route, and GET /jobs?limit=50 with BENCH_LIST_JOBS jobs in
Redis; Redis' memory per job made by the POST run. Prints figures; asserts nothing.

Starts its own stack (tests/harness.py: private Redis, spawn-fcgi'd programs, nginx including
nginx/jobgate.conf as shipped) on free loopback ports, and stops it at the end.

FRONT=apache (`make bench FRONT=apache`): the same runs behind Apache (apache/jobgate.conf as
shipped, tests/apache_front.py), next to Apache's own answer of a small static file, and the GET
over a FastCGI connection per request (a mod_proxy worker without enablereuse).

Environment: FRONT (nginx), BENCH_DURATION (s per wrk run, 10), BENCH_CONNECTIONS (64), BENCH_THREADS (wrk
threads, 2), BENCH_WAITERS, BENCH_LP_IDLE, BENCH_LP_CHANGES, BENCH_LP_ROUNDS (longpoll.py;
BENCH_WAITERS=0 skips the long polls), BENCH_PROGRAM_THREADS (each program's default: 8, and
one per CPU, 2 to 8, for jobgate-status and jobgate-submit),
BENCH_ONLY (comma list of run names to keep, e.g. "GET,POST"), BENCH_LIST_JOBS (jobs in the
listed queue, 100000; 0 skips it), JOBGATE_BUILD (build).
"""

import os
import subprocess
import sys
import time

from measure import commandstats, cpu_s, env, harness, info_field, pct, submit_script_calls, tree, wrk
import longpoll

HERE = os.path.dirname(os.path.abspath(__file__))
DURATION = env("BENCH_DURATION", 10)
CONNECTIONS = env("BENCH_CONNECTIONS", 64)
WRK_THREADS = env("BENCH_THREADS", 2)
WAITERS = longpoll.WAITERS
IDLE = longpoll.IDLE
PROGRAM_THREADS = env("BENCH_PROGRAM_THREADS", 0)   # 0: no --threads, each program's default
LIST_JOBS = env("BENCH_LIST_JOBS", 100000)
STATS_QUEUES = ["bench-q%d" % i for i in range(10)]

# The bench's own additions to the server block: the ceiling, and GET /jobs/{id} with a new
# FastCGI connection per request (what nginx/jobgate.conf would do without its kept-alive
# upstreams), to show what keep-alive is worth.
SERVER_EXTRA = r"""
        location = /bench/ceiling { return 200 "ok\n"; }

        location ~ ^/bench/nokeepalive/jobs/([^/]+)$ {
            fastcgi_param REQUEST_METHOD  $request_method;
            fastcgi_param REQUEST_URI     /api/jobs/$1$is_args$args;
            fastcgi_param CONTENT_TYPE    $content_type;
            fastcgi_param CONTENT_LENGTH  $content_length;
            fastcgi_param REMOTE_ADDR     $remote_addr;
            fastcgi_param HTTP_PROXY      "";
            fastcgi_pass unix:@DIR@/status.sock;
        }
"""
HTTP_EXTRA = ""

# The same for Apache: its own static answer (a 3-byte file), and GET /jobs/{id} over a mod_proxy
# worker without enablereuse (a FastCGI connection per request), REQUEST_URI set to the route.
APACHE_EXTRA = r"""
    Alias /bench/ceiling @DIR@/ceiling.txt
    <Directory @DIR@>
        Require all granted
    </Directory>
    <LocationMatch "^/bench/nokeepalive/jobs/(?<jid>[^/]+)$">
        ProxyFCGIBackendType GENERIC
        ProxyFCGISetEnvIf "true" REQUEST_URI "/api/jobs/%{env:MATCH_JID}"
        SetHandler "proxy:unix:@DIR@/status.sock|fcgi://bench-noreuse"
    </LocationMatch>
"""
FRONT = env("FRONT", "nginx")

POST_LUA = """
wrk.method = "POST"
wrk.body = '{"type":"echo","queue":"bench","payload":{"n":1}}'
wrk.headers["Content-Type"] = "application/json"
"""


def admin_setup(s):
    """/stats has something to count: 10 queues with jobs done, and 4 idle workers on them."""
    for q in STATS_QUEUES:
        s.submit(type="echo", queue=q)
    for _ in range(4):
        s.start_worker(queues=STATS_QUEUES, types=["echo"], concurrency=2)
    harness.wait_until(lambda: s.redis("ZCARD", "jobgate:workers") == 4, 20, "4 workers")


def fill_list_queue(s, queue, n):
    """n jobs in queue, made by submit.lua itself (EVAL of redis/submit.lua, pipelined): a
    100,000-job listing without 100,000 HTTP submits."""
    src = open(os.path.join(os.path.dirname(HERE), "redis", "submit.lua")).read()
    sha = s.redis("SCRIPT", "LOAD", src)
    tag = s.submit(type="echo", queue=queue, delay=86400)["id"][:8]
    for start in range(0, n, 1000):
        ids = ["%s.%s" % (tag, ("b%021d" % i)) for i in range(start, min(n, start + 1000))]
        s.redis_pipeline(submit_script_calls(sha, queue, "echo", ids, delay_ms=86400000))


def list_latency(s, queue, pages=300):
    """GET /jobs?queue=&limit=50 on one kept-alive connection: the first page `pages` times,
    then `pages` pages walked with their cursors. Returns (first-page ms list, walk ms list)."""
    import http.client
    import json
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
    first, walk = [], []
    path = "/api/jobs?queue=%s&limit=50" % queue
    for out, follow in ((first, False), (walk, True)):
        url = path
        for _ in range(pages):
            t = time.monotonic()
            c.request("GET", url)
            r = c.getresponse()
            body = r.read()
            out.append(1000 * (time.monotonic() - t))
            nxt = json.loads(body)["next"] if r.status == 200 else None
            if follow and nxt:
                url = path + "&cursor=" + nxt
    c.close()
    return first, walk


def main():
    front_bin = "apache2" if FRONT == "apache" else "nginx"
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin"
    for tool in ("wrk", front_bin, "redis-server", "spawn-fcgi"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
            sys.exit("bench: %s is not installed (make deps)" % tool)
    harness.install_signal_handlers()
    print("bench: starting a stack behind %s (threads %s per program) ..."
          % (FRONT, PROGRAM_THREADS or "the default"), flush=True)
    with harness.Stack(name="bench", threads=PROGRAM_THREADS, nginx_extra=SERVER_EXTRA,
                       front=FRONT, apache_extra=APACHE_EXTRA, apache_workers=WAITERS + IDLE + 256,
                       nginx_http_extra=HTTP_EXTRA, grace=5,
                       nginx_workers=2,
                       nginx_worker_connections=max(4096, 2 * (WAITERS + IDLE) + 1024),
                       program_args=("--max-streams", str(max(10000, WAITERS + IDLE + 100)))) as s:
        job = s.submit(type="echo", queue="bench", payload={"bench": True})
        admin_setup(s)
        base = "http://127.0.0.1:%d" % s.port
        with open(os.path.join(s.dir, "ceiling.txt"), "w") as f:
            f.write("ok\n")
        lua = os.path.join(s.dir, "post.lua")
        with open(lua, "w") as f:
            f.write(POST_LUA)
        runs = [
            ("nginx return 200 (ceiling)" if FRONT == "nginx" else "Apache static file (ceiling)",
             base + "/bench/ceiling", None),
            ("GET /api/jobs/{id}", base + "/api/jobs/" + job["id"], None),
            ("GET, no keep-alive", base + "/bench/nokeepalive/jobs/" + job["id"], None),
            ("POST /api/jobs", base + "/api/jobs", lua),
            ("GET /api/health", base + "/api/health", None),
            ("GET /api/stats (10 queues, 4 workers)", base + "/api/stats", None),
        ]
        only = os.environ.get("BENCH_ONLY")   # e.g. "ceiling,keep-alive": a subset of the runs
        if only:
            runs = [runs[0]] + [r for r in runs[1:] if any(o in r[0] for o in only.split(","))]
        # the ceiling again at the end, with the same wrk settings: the routes' share is of the
        # mean of the two, and the two show how much the machine moved during the runs
        runs.append((runs[0][0].replace("(ceiling)", "(again)"), runs[0][1], runs[0][2]))
        print("bench: wrk -t%d -c%d -d%ds per run, loopback, %d CPUs"
              % (WRK_THREADS, CONNECTIONS, DURATION, os.cpu_count() or 0), flush=True)
        groups = {FRONT: tree(s.nginx_proc.pid),
                  "submit": s.program_pids("submit"), "status": s.program_pids("status"),
                  "admin": s.program_pids("admin"), "redis": [s.redis_proc.pid]}
        results = []
        jobs_key = "jobgate:{%s}:q:bench:jobs" % job["id"][:8]   # the POST runs' queue's index
        for name, url, script in runs:
            print("bench: %s ..." % name, flush=True)
            mem0 = info_field(s.redis("INFO", "memory"), "used_memory")
            jobs0 = s.redis("ZCARD", jobs_key)
            before = {g: cpu_s(p) for g, p in groups.items()}
            s.redis("CONFIG", "RESETSTAT")
            res = wrk(url, DURATION, CONNECTIONS, WRK_THREADS, script)
            wrk_cpu = res["cpu"]
            res["cpu"] = {g: cpu_s(p) - before[g] for g, p in groups.items()}
            res["cpu"]["wrk"] = wrk_cpu
            res["cmds"] = commandstats(s.redis("INFO", "commandstats"))
            res["reads"] = info_field(s.redis("INFO", "stats"), "total_reads_processed")
            res["mem"] = info_field(s.redis("INFO", "memory"), "used_memory") - mem0
            res["jobs"] = s.redis("ZCARD", jobs_key) - jobs0
            results.append((name, res))
        ceiling = (results[0][1]["rps"] + results[-1][1]["rps"]) / 2 or float("nan")
        print()
        print("%-38s %10s %9s %9s %9s %8s" % ("run", "req/s", "p50 ms", "p99 ms", "ceiling", "errors"))
        for name, r in results:
            print("%-38s %10.0f %9s %9s %8.0f%% %8d" % (
                name, r["rps"], "%.2f" % r["p50"] if r["p50"] is not None else "-",
                "%.2f" % r["p99"] if r["p99"] is not None else "-",
                100.0 * r["rps"] / ceiling, r["non2xx"] + r["errors"]))
        print("(ceiling: the mean of its two runs, first and last)")
        print("\nCPU time per 1000 requests (ms), by process, and wrk's own (the client's share of "
              "the same cores):")
        cols = list(groups) + ["wrk"]
        print("%-38s %s %9s" % ("run", " ".join("%9s" % g for g in cols), "all"))
        for name, r in results:
            n = max(1.0, r["requests"] / 1000.0)
            print("%-38s %s %9.1f" % (name, " ".join("%9.1f" % (1000 * r["cpu"][g] / n) for g in cols),
                                      1000 * sum(r["cpu"].values()) / n))
        print("\nRedis commands per request (INFO commandstats; scripts' own commands included):")
        for name, r in results[1:-1]:
            n = max(1.0, r["requests"])
            print("  %-28s %s" % (name, ", ".join("%s %.2f" % (k, v / n) for k, v in
                                                  sorted(r["cmds"].items(), key=lambda kv: -kv[1])
                                                  if v / n >= 0.01) or "-"))
        print("\nRedis reads per request (INFO stats total_reads_processed: a batch sent in one "
              "write is about one read):")
        for name, r in results[1:-1]:
            n = max(1.0, r["requests"])
            print("  %-28s %.2f" % (name, r["reads"] / n))
        for name, r in results:
            if r["jobs"] > 0:   # what each job kept costs Redis for its retention (24 h default)
                print("\nRedis memory per job made by %s (used_memory's growth over the run / jobs "
                      "made, %d; Redis with %s): %.0f bytes"
                      % (name, r["jobs"], " ".join(harness.REDIS_RECOMMENDED),
                         r["mem"] / r["jobs"]))
        bad = [(n, r) for n, r in results if r["rps"] == 0]
        for n, r in bad:
            print("\nbench: %s gave no figures; wrk said:\n%s" % (n, r["raw"]))

        # ---- the job listing over many jobs
        if LIST_JOBS > 0:
            print("\nbench: GET /jobs?limit=50 with %d jobs in one queue ..." % LIST_JOBS, flush=True)
            fill_list_queue(s, "bench-list", LIST_JOBS)
            first, walk = (sorted(x) for x in list_latency(s, "bench-list"))
            print("  Redis keys: %d" % s.redis("DBSIZE"))
            print("  first page: p50 %.2f ms, p99 %.2f ms; pages walked by cursor: p50 %.2f ms, "
                  "p99 %.2f ms (aim: p99 < 10 ms)"
                  % (pct(first, 50), pct(first, 99), pct(walk, 50), pct(walk, 99)))

        # ---- long poll
        dead = s.check_alive()
        if dead:
            print("\nbench: a process died during the runs:\n" + "\n".join(dead))
            return
        if WAITERS <= 0:
            return
        print()
        longpoll.run(s, s.program_pids("status")[0])
    print("\nbench: stack stopped")


if __name__ == "__main__":
    main()
