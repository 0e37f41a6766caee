#!/usr/bin/env python3
"""ssecost.py — what jobgate-logs spends per live log line it fans out to a viewer, counted
by callgrind (instructions) and strace (system calls): repeatable, unlike time on a shared
machine.

Starts a private redis-server, jobgate-submit and jobgate-logs (under valgrind's callgrind, or
under `strace -c -f` with --strace) on unix sockets of a temporary directory, and a
jobgate-worker running --jobs jobs that each print --lines lines, one every --gap ms. Opens
--streams SSE streams straight on jobgate-logs' FastCGI socket (as nginx does), spread evenly
over the jobs, waits until every stream is caught up, zeroes the counters, lets the jobs print,
reads every stream until each has every line, and prints the program's instructions (or system
calls) per line delivered to a viewer: the subscriber thread, the loop's read of the log, the
rendering and the writes, with libc, hiredis and the kernel entry; not the kernel's own work.

    /usr/bin/python3 bench/ssecost.py [--streams 1000] [--jobs 10] [--lines 20] [--gap 50]
                                      [--build build] [--strace] [--keep FILE]
"""

import argparse
import os
import select
import shutil
import subprocess
import tempfile
import time

from measure import ROOT, harness, stop  # noqa: E402  (tests/ on the path)

# prints `tick <i>` lines once the file named in the payload exists (the counters are zeroed)
JOB = r"""
import json, os, sys, time
p = json.load(sys.stdin)
while not os.path.exists(p["go"]):
    time.sleep(0.02)
for i in range(p["lines"]):
    sys.stdout.write("tick %d\n" % i)
    sys.stdout.flush()
    time.sleep(p["gap"] / 1000.0)
"""



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--lines", type=int, default=20)
    ap.add_argument("--gap", type=int, default=50)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--keep", help="copy callgrind's output file here (callgrind_annotate)")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="ssecost.")
    procs = []
    try:
        rs = os.path.join(d, "redis.sock")
        procs.append(subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", rs,
                                       "--save", "", "--appendonly", "no", "--dir", d]
                                      + list(harness.REDIS_RECOMMENDED),
                                      stdout=subprocess.DEVNULL))
        harness.wait_until(lambda: harness.accepts(rs), 60, "redis-server")
        env = dict(os.environ, REDIS_URL="unix://" + rs)
        sub, lg = os.path.join(d, "submit.sock"), os.path.join(d, "logs.sock")
        procs.append(subprocess.Popen([os.path.join(a.build, "jobgate-submit"), "--socket", sub,
                                       "--threads", "1"], env=env, stderr=subprocess.DEVNULL))
        logs = [os.path.join(a.build, "jobgate-logs"), "--socket", lg, "--threads", "1",
                "--max-streams", str(a.streams + 100)]
        if a.strace:
            wrap = ["strace", "-c", "-f", "-o", os.path.join(d, "strace.txt")]
        else:
            wrap = ["valgrind", "--tool=callgrind", "--log-file=" + d + "/vg.log",
                    "--callgrind-out-file=" + d + "/cg.%p"]
        lp = subprocess.Popen(wrap + logs, env=env, stderr=subprocess.DEVNULL)
        procs.append(lp)
        job = os.path.join(d, "job.py")
        with open(job, "w") as f:
            f.write(JOB)
        procs.append(subprocess.Popen(
            [os.path.join(a.build, "jobgate-worker"), "--queue", "cost", "--type",
             "tick=exec python3 -u " + job, "--concurrency", str(a.jobs)],
            env=env, stderr=subprocess.DEVNULL))
        harness.wait_until(lambda: harness.accepts(sub) and harness.accepts(lg), 60,
                           "the programs' sockets")
        go = os.path.join(d, "go")
        ids = []
        for _ in range(a.jobs):
            body = ('{"type":"tick","queue":"cost","payload":{"go":"%s","lines":%d,"gap":%d}}'
                    % (go, a.lines, a.gap)).encode()
            r = harness.fcgi_request(sub, harness.fcgi_params(
                "POST", "/api/jobs", body, {"Content-Type": "application/json"}), body)
            ids.append(r.json()["id"])

        def running():
            for i in ids:
                r = harness.fcgi_request(sub.replace("submit", "logs"), harness.fcgi_params(
                    "GET", "/api/jobs/%s/logs" % i))
                if b'"status":"running"' not in r.body:
                    return False
            return True
        harness.wait_until(running, 60, "every job running", 0.05)

        ep = select.epoll()
        socks, tail, got = {}, {}, {}
        pat = b"event: log"
        for n in range(a.streams):
            s = harness.fcgi_connect(lg, timeout=30)
            s.sendall(harness.fcgi_request_bytes(harness.fcgi_params(
                "GET", "/api/jobs/%s/logs" % ids[n % a.jobs],
                headers={"Accept": "text/event-stream"})))
            s.setblocking(False)
            socks[s.fileno()] = s
            tail[s.fileno()], got[s.fileno()] = b"", 0
            ep.register(s.fileno(), select.EPOLLIN)

        def read(timeout):
            for fd, _ in ep.poll(timeout):
                try:
                    data = socks[fd].recv(65536)
                except BlockingIOError:
                    continue
                t = tail[fd] + data
                got[fd] += t.count(pat) - tail[fd].count(pat)
                tail[fd] = t[-len(pat):]
        end = time.monotonic() + 10   # every stream's start (retry, status, the queued entry)
        while time.monotonic() < end and min(got.values()) < 1:
            read(0.1)
        for _ in range(20):
            read(0.05)
        base = dict(got)
        if not a.strace:
            subprocess.run(["callgrind_control", "-z", str(lp.pid)], check=True,
                           capture_output=True)
        open(go, "w").close()
        want = a.lines
        end = time.monotonic() + 120 + a.lines * a.gap / 1000.0
        while time.monotonic() < end and min(got[fd] - base[fd] for fd in got) < want:
            read(0.1)
        delivered = sum(got[fd] - base[fd] for fd in got)
        what = ""
        if a.strace:   # SIGTERM to the program itself (strace would detach from it): the
            procs.remove(lp)   # summary is written when it exits
            with open("/proc/%d/task/%d/children" % (lp.pid, lp.pid)) as f:
                os.kill(int(f.read().split()[0]), 15)
            lp.wait(30)
            calls, rows = 0, []
            for line in open(os.path.join(d, "strace.txt")):
                f = line.split()
                if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                    rows.append((int(f[3]), f[-1]))
            calls = sum(n for n, _ in rows)
            what = "%.2f system calls (%s)" % (calls / delivered, ", ".join(
                "%s %.2f" % (name, n / delivered) for n, name in sorted(rows, reverse=True)[:6]))
            what += "; the whole run, stream starts and ends included"
        else:
            before = set(os.listdir(d))
            subprocess.run(["callgrind_control", "-d", str(lp.pid)], check=True,
                           capture_output=True)
            total = 0
            for f in sorted(set(os.listdir(d)) - before):
                if f.startswith("cg."):
                    if a.keep:
                        shutil.copy(os.path.join(d, f), a.keep)
                    for line in open(os.path.join(d, f)):
                        if line.startswith("summary:"):
                            total += int(line.split()[1])
            what = "%d instructions" % (total / delivered)
        print("jobgate-logs (%s): %s per line delivered to a viewer (%d streams over %d jobs, "
              "%d lines each, one every %d ms; %d lines delivered of %d)"
              % (a.build, what, a.streams, a.jobs, a.lines, a.gap, delivered,
                 a.streams * a.lines))
        for s in socks.values():
            s.close()
    finally:
        stop(procs)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
