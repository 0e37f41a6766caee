#!/usr/bin/env python3
"""statuscost.py — instructions jobgate-status spends per GET /jobs/{id}, counted by callgrind.

Starts a private redis-server, jobgate-submit (plain) and jobgate-status under valgrind's
callgrind (one thread), both on unix sockets of a temporary directory; submits one job through
jobgate-submit, then sends N GETs of it to jobgate-status over one kept-alive FastCGI connection
(as nginx's keepalive upstream does), counting only those. Prints instructions per GET (the
program, hiredis, libc; not the kernel) — repeatable, unlike time on a shared machine.
--cluster: on a private Redis Cluster of 3 masters and 3 replicas (tests/cluster.py, loopback
TCP) instead of one redis-server on a unix socket; --tcp: the one redis-server over loopback TCP
(what the cluster's transport alone adds).

    /usr/bin/python3 bench/statuscost.py [--n 2000] [--build build] [--cluster | --tcp]
"""

import argparse
import os
import shutil
import subprocess
import tempfile

from measure import ROOT, harness, stop  # noqa: E402  (tests/ on the path)



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("--tcp", action="store_true")
    a = ap.parse_args()
    cl = None
    d = tempfile.mkdtemp(prefix="statuscost.", dir=os.path.join(ROOT, "run")
                         if os.path.isdir(os.path.join(ROOT, "run")) else None)
    procs = []
    try:
        if a.cluster:
            import cluster
            cl = cluster.Cluster()
            url = cl.url
        else:
            rs = os.path.join(d, "redis.sock")
            port = harness.free_port() if a.tcp else 0
            procs.append(subprocess.Popen(["redis-server", "--port", str(port), "--unixsocket", rs,
                                           "--save", "", "--appendonly", "no", "--dir", d]
                                          + list(harness.REDIS_RECOMMENDED),
                                          stdout=subprocess.DEVNULL))
            harness.wait_until(lambda: harness.accepts(rs), 60, "redis-server")
            url = "redis://127.0.0.1:%d/0" % port if a.tcp else "unix://" + rs
        env = dict(os.environ, REDIS_URL=url)
        sub, st = os.path.join(d, "submit.sock"), os.path.join(d, "status.sock")
        procs.append(subprocess.Popen([os.path.join(a.build, "jobgate-submit"), "--socket", sub,
                                       "--threads", "1"], env=env, stderr=subprocess.DEVNULL))
        cg = subprocess.Popen(["valgrind", "--tool=callgrind", "--log-file=" + d + "/vg.log",
                               "--callgrind-out-file=" + d + "/cg.%p",
                               os.path.join(a.build, "jobgate-status"), "--socket", st,
                               "--threads", "1"], env=env, stderr=subprocess.DEVNULL)
        procs.append(cg)
        harness.wait_until(lambda: harness.accepts(sub), 60, "jobgate-submit")
        harness.wait_until(lambda: harness.accepts(st), 60, "jobgate-status")
        body = b'{"type":"echo","payload":{"n":1}}'
        r = harness.fcgi_request(sub, harness.fcgi_params(
            "POST", "/api/jobs", body, {"Content-Type": "application/json"}), body)
        jid = r.json()["id"]
        params = harness.fcgi_params("GET", "/api/jobs/" + jid)
        req = harness.fcgi_request_bytes(params, keep_conn=True)
        s = harness.fcgi_connect(st, timeout=120)
        for _ in range(20):   # warm: the thread's Redis connection, the scripts, caches
            s.sendall(req)
            r = harness.fcgi_read_response(s)
        if r.status != 200:
            raise SystemExit("statuscost: GET answered %r" % r)
        subprocess.run(["callgrind_control", "-z", str(cg.pid)], check=True, capture_output=True)
        for _ in range(a.n):
            s.sendall(req)
            harness.fcgi_read_response(s)
        before = set(os.listdir(d))
        subprocess.run(["callgrind_control", "-d", str(cg.pid)], check=True, capture_output=True)
        total = 0
        for f in sorted(set(os.listdir(d)) - before):
            if f.startswith("cg."):
                for line in open(os.path.join(d, f)):
                    if line.startswith(("summary:", "totals:")):
                        total = int(line.split()[1])
        s.close()
        print("jobgate-status (%s, %s): %d instructions per GET /jobs/{id} (callgrind, %d GETs on "
              "one kept-alive FastCGI connection; %d-byte answer)"
              % (a.build, "a 3+3 Redis Cluster" if a.cluster else
                 "one Redis over TCP" if a.tcp else "one Redis over a unix socket",
                 total / a.n, a.n, len(r.body)))
    finally:
        stop(procs)
        if cl is not None:
            cl.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
