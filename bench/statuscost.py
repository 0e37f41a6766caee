#!/usr/bin/env python3
"""statuscost.py — instructions jobgate-status spends per GET /jobs/{id}, counted by callgrind.

Starts a private redis-server, jobgate-submit (plain) and jobgate-status under valgrind's
callgrind (one thread), both on unix sockets of a temporary directory; submits one job through
jobgate-submit, then sends N GETs of it to jobgate-status over one kept-alive FastCGI connection
(as nginx's keepalive upstream does), counting only those. Prints instructions per GET (the
program, libfcgi, hiredis, libc; not the kernel) — repeatable, unlike time on a shared machine.

    /usr/bin/python3 bench/statuscost.py [--n 2000] [--build build]
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
import harness  # noqa: E402  (FastCGI records)


def wait_for(path, what, secs=60):
    for _ in range(int(secs / 0.05)):
        if os.path.exists(path):
            return
        time.sleep(0.05)
    raise SystemExit("statuscost: %s did not come up" % what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="statuscost.", dir=os.path.join(ROOT, "run")
                         if os.path.isdir(os.path.join(ROOT, "run")) else None)
    procs = []
    try:
        rs = os.path.join(d, "redis.sock")
        procs.append(subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", rs,
                                       "--save", "", "--appendonly", "no", "--dir", d],
                                      stdout=subprocess.DEVNULL))
        wait_for(rs, "redis-server")
        env = dict(os.environ, REDIS_URL="unix://" + rs)
        sub, st = os.path.join(d, "submit.sock"), os.path.join(d, "status.sock")
        procs.append(subprocess.Popen([os.path.join(a.build, "jobgate-submit"), "--socket", sub,
                                       "--threads", "1"], env=env, stderr=subprocess.DEVNULL))
        cg = subprocess.Popen(["valgrind", "--tool=callgrind", "--log-file=" + d + "/vg.log",
                               "--callgrind-out-file=" + d + "/cg.%p",
                               os.path.join(a.build, "jobgate-status"), "--socket", st,
                               "--threads", "1"], env=env, stderr=subprocess.DEVNULL)
        procs.append(cg)
        wait_for(sub, "jobgate-submit")
        wait_for(st, "jobgate-status")
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
        print("jobgate-status (%s): %d instructions per GET /jobs/{id} (callgrind, %d GETs on one "
              "kept-alive FastCGI connection; %d-byte answer)"
              % (a.build, total / a.n, a.n, len(r.body)))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
