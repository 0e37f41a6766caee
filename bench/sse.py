#!/usr/bin/env python3
"""sse.py — issue 5's benchmark: many SSE log streams held on ONE jobgate-logs process behind
nginx, and the latency of a live line while they are held. Prints figures; asserts nothing.

A private stack (tests/harness.py: Redis, submit/status/logs under spawn-fcgi, nginx with the
shipped config, enough nginx workers and worker_connections for the streams' descriptors) and one jobgate-worker running
BENCH_SSE_JOBS `ticker` jobs. A ticker job prints `tick <n> <wall-clock ns>` every
BENCH_SSE_INTERVAL_MS ms for as long as the bench lasts, on a fixed schedule: job i at i/JOBS of
the interval, so that the lines come at an even rate (10,000 lines/s to clients is 100 lines of
100 viewers each, one every 10 ms); BENCH_SSE_BURST=1 makes every job print at the same moment
(the whole second's lines in one burst). Lines are timed once every job prints (the jobs'
interpreters starting, seconds of CPU on 2 cores, are not in the window). The client (one process, a plain epoll
loop over raw non-blocking sockets, HTTP/1.0 so that the bytes arrive unchunked) opens
BENCH_SSE_STREAMS `GET /api/jobs/{id}/logs` with `Accept: text/event-stream`, spread evenly over
the jobs, and then, for BENCH_SSE_WINDOW s:
  - every stream is read (and one that closes is counted as lost);
  - on every BENCH_SSE_SAMPLE-th stream of each job each tick line is parsed, and its latency
    is the client's receive time (time.time_ns() right after recv) minus the time the job
    printed in it: the worker reading the pipe, log.lua, the PUBLISH, the logs process's read
    and delivery, nginx, and this client's own wakeup all included. It is split at the entry's
    `ts` (Redis' clock when log.lua stored it, ms resolution) and at the kernel's arrival time
    of the bytes in the client's socket (SO_TIMESTAMPNS), so that the bench shows which part a
    tail comes from, and the CPU of each process on the path over the window is printed;
  - a thread makes a plain request (a polled page of a job's log, served by the same
    jobgate-logs process on its request threads) once a second and times it.
RSS and fds of the logs process are read from /proc idle (jobs running, no streams) and with the
streams held. Everything is stopped at the end.

The client must not be what is timed: on a 2-core machine one Python process reading 10,000
streams wakes for each of the 10,000 lines a second and would delay the timed reads behind the
untimed ones. So, once the streams are open, the untimed streams are handed to a second client
process at nice 19 (standing in for browsers on other machines: it reads every line, and counts
them, at the lowest CPU priority), and this process reads only the timed ones.
BENCH_SSE_SPLIT=0 reads every stream in this one process instead (how it was measured before).

FRONT=apache (`make bench FRONT=apache`): the same through Apache (apache/jobgate.conf as
shipped), whose event MPM is given a thread per stream (every open stream holds one there).

Environment: FRONT (nginx), BENCH_SSE_STREAMS (10000), BENCH_SSE_JOBS (100), BENCH_SSE_INTERVAL_MS (1000),
BENCH_SSE_WINDOW (20 s), BENCH_SSE_SAMPLE (10: every 10th stream is timed), BENCH_SSE_SPLIT (1),
BENCH_SSE_BURST (0), BENCH_SSE_DUMP (a directory: every timed line's print, read and arrival ns,
and jobgate-logs' log, for a closer look), JOBGATE_BUILD.
"""

import calendar
import errno
import os
import re
import resource
import select
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import harness  # noqa: E402
from measure import cpu_s, fd_count, pct, rss_kb, tree  # noqa: E402

STREAMS = int(os.environ.get("BENCH_SSE_STREAMS", "10000"))
JOBS = int(os.environ.get("BENCH_SSE_JOBS", "100"))
INTERVAL_MS = int(os.environ.get("BENCH_SSE_INTERVAL_MS", "1000"))
WINDOW = float(os.environ.get("BENCH_SSE_WINDOW", "20"))
SAMPLE = max(1, int(os.environ.get("BENCH_SSE_SAMPLE", "10")))
SPLIT = os.environ.get("BENCH_SSE_SPLIT", "1") != "0"
BURST = os.environ.get("BENCH_SSE_BURST", "0") != "0"
DUMP = os.environ.get("BENCH_SSE_DUMP")   # a directory: every timed line and the logs' log
QUEUE = "ssebench"
OPEN_BATCH = 250            # connects in flight at once while opening
OPEN_TIMEOUT = 60.0         # s for all streams to be opened
JOB_LIFETIME = 300          # s a ticker job runs at most (the bench stops it well before)

# The job: stdin is the payload; prints its own wall clock in every line, unbuffered.
TICKER = r"""
import json, sys, time
p = json.load(sys.stdin)
iv = p["ms"] * 1000000
end = time.monotonic() + p["for_s"]
n = 0
nxt = time.time_ns() // iv * iv + p["phase_ms"] * 1000000   # on the wall clock's grid
while time.monotonic() < end:
    d = nxt - time.time_ns()
    if d > 0:
        time.sleep(d / 1e9)
    n += 1
    sys.stdout.write("tick %d %d\n" % (n, time.time_ns()))
    sys.stdout.flush()
    nxt += iv
"""

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)   # Linux; its cmsg: struct timespec
TICK = re.compile(rb'"line":"tick (\d+) (\d+)"')
# A live tick line with the time Redis stored it (its "ts", ms): splits a line's latency into
# print -> Redis (the worker's pipe read, its log.lua call) and Redis -> client (the PUBLISH, the
# logs process, nginx, this client).
LIVE = re.compile(rb'"ts":"([0-9T:-]{19})\.(\d{3})Z","stream":"[a-z]+","line":"tick \d+ (\d+)"')






class Stream:
    __slots__ = ("sock", "job", "sampled", "state", "buf", "events", "out")

    def __init__(self, sock, job, sampled, request):
        self.sock, self.job, self.sampled = sock, job, sampled
        self.state = "connecting"   # -> "head" (request sent) -> "open" (200 seen) | "closed"
        self.buf = b""
        self.events = 0
        self.out = request


class Client:
    """The streams, in one epoll loop."""

    def __init__(self, port):
        self.port = port
        self.ep = select.epoll()
        self.streams = {}           # fd -> Stream
        self.opened = 0             # 200 + headers seen
        self.refused = {}           # status or error -> count
        self.lost = 0               # closed after being open
        self.npending = 0           # connecting or waiting for the headers
        self.measuring = False
        self.lat = []               # ms: print -> read
        self.to_redis = []          # ms: print -> the entry's ts (Redis' clock, ms resolution)
        self.from_redis = []        # ms: the entry's ts -> read
        self.in_client = []         # ms: arrival in the client's socket (SO_TIMESTAMPNS) -> read
        self.arrived_ns = 0
        self.samples = []           # (printed ns, read ns, epoll wake ns), for BENCH_SSE_DUMP
        self.ts_cache = {}
        self.ticks_seen = 0
        self.window_lines = 0       # lines read on every stream this process reads, in the window
        self.backlog_ticks = 0

    def connect(self, job_id, sampled):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        req = ("GET /api/jobs/%s/logs HTTP/1.0\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
               % job_id).encode()
        st = Stream(s, job_id, sampled, req)
        if sampled:   # the kernel's arrival time of what each read returns
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        except OSError as e:
            why = "connect: %s" % errno.errorcode.get(e.errno, e.errno)
            self.refused[why] = self.refused.get(why, 0) + 1
            s.close()
            return
        self.streams[s.fileno()] = st
        self.npending += 1
        self.ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN)

    def pending(self):
        return self.npending

    def _close(self, fd, st, why=None):
        with_open = st.state == "open"
        if not with_open:
            self.npending -= 1
        try:
            self.ep.unregister(fd)
        except OSError:
            pass
        st.sock.close()
        del self.streams[fd]
        st.state = "closed"
        if with_open:
            self.lost += 1
        elif why:
            self.refused[why] = self.refused.get(why, 0) + 1

    def _data(self, st, data, now_ns):
        if st.state == "head":
            st.buf += data
            head, sep, rest = st.buf.partition(b"\r\n\r\n")
            if not sep:
                return True
            m = re.match(rb"HTTP/1\.\d (\d{3})", head)
            status = int(m.group(1)) if m else 0
            if status != 200 or b"text/event-stream" not in head:
                return "HTTP %d" % status
            st.state = "open"
            self.opened += 1
            self.npending -= 1
            st.buf = b""
            data = rest
            if st.sampled:   # the backlog sent at open is not live: not timed
                self.backlog_ticks += len(TICK.findall(data))
                data = b""
        if self.measuring:
            self.window_lines += data.count(b"event: log")
        if st.sampled and data and self.measuring:
            for ts, ms, ns in LIVE.findall(data):
                printed = int(ns)
                sec = self.ts_cache.get(ts)
                if sec is None:
                    sec = self.ts_cache[ts] = calendar.timegm(time.strptime(ts.decode(),
                                                                            "%Y-%m-%dT%H:%M:%S"))
                stored_ms = sec * 1000 + int(ms)
                self.lat.append((now_ns - printed) / 1e6)
                self.samples.append((printed, now_ns, self.arrived_ns))
                self.to_redis.append(stored_ms - printed / 1e6)
                self.from_redis.append(now_ns / 1e6 - stored_ms)
                self.in_client.append((now_ns - self.arrived_ns) / 1e6)
                self.ticks_seen += 1
        return True

    def poll(self, timeout):
        for fd, ev in self.ep.poll(timeout):
            st = self.streams.get(fd)
            if st is None:
                continue
            if st.state == "connecting":
                err = st.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._close(fd, st, "connect: %s" % errno.errorcode.get(err, err))
                    continue
                st.state = "head"
                try:
                    st.sock.send(st.out)
                except OSError as e:
                    self._close(fd, st, "send: %s" % e)
                    continue
                self.ep.modify(fd, select.EPOLLIN)
                continue
            if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                arrived_ns = 0
                try:
                    if st.sampled:
                        data, anc, _, _ = st.sock.recvmsg(65536, 64)
                        for level, kind, raw in anc:
                            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                                sec, nsec = struct.unpack("qq", raw[:16])
                                arrived_ns = sec * 1000000000 + nsec
                    else:
                        data = st.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    self._close(fd, st, "recv: %s" % e)
                    continue
                now_ns = time.time_ns()
                self.arrived_ns = arrived_ns or now_ns
                if not data:
                    self._close(fd, st, "closed before the headers (%r)" % st.buf[:80])
                    continue
                r = self._data(st, data, now_ns)
                if r is not True:
                    self._close(fd, st, r)

    def split_off(self):
        """Hands the untimed open streams to a child process at nice 19 that reads them until
        told to stop; returns (pid, stop fd, result fd). Its answer: "<lines> <closed>"."""
        untimed = [(fd, st) for fd, st in self.streams.items()
                   if st.state == "open" and not st.sampled]
        for fd, _ in untimed:
            self.ep.unregister(fd)   # the epoll instance would be shared with the child
        stop_r, stop_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.nice(19)
                os.close(stop_w)
                os.close(res_r)
                ep = select.epoll()
                socks = {fd: st.sock for fd, st in untimed}
                for fd in socks:
                    ep.register(fd, select.EPOLLIN)
                ep.register(stop_r, select.EPOLLIN)
                lines = closed = 0
                stop = False
                while not stop:
                    for fd, _ in ep.poll(1.0):
                        if fd == stop_r:
                            stop = True
                            continue
                        sk = socks.get(fd)
                        if sk is None:
                            continue
                        try:
                            data = sk.recv(65536)
                        except BlockingIOError:
                            continue
                        except OSError:
                            data = b""
                        if not data:
                            ep.unregister(fd)
                            del socks[fd]
                            closed += 1
                            continue
                        lines += data.count(b"event: log")
                os.write(res_w, b"%d %d" % (lines, closed))
            finally:
                os._exit(0)
        os.close(stop_r)
        os.close(res_w)
        for fd, st in untimed:
            st.sock.close()
            del self.streams[fd]
        self.untimed = len(untimed)
        return pid, stop_w, res_r

    def close_all(self):
        for fd, st in list(self.streams.items()):
            try:
                self.ep.unregister(fd)
            except OSError:
                pass
            st.sock.close()
        self.streams.clear()
        self.ep.close()


def plain_requests(s, job_id, until, out):
    """A polled page of a job's log (jobgate-logs' request threads), once a second."""
    while time.monotonic() < until:
        t0 = time.monotonic()
        try:
            r = s.request("GET", "/jobs/%s/logs?limit=5" % job_id, timeout=10)
            out.append((r.status, (time.monotonic() - t0) * 1000))
        except Exception as e:   # noqa: BLE001 — a figure, not a failure
            out.append(("error %r" % e, (time.monotonic() - t0) * 1000))
        time.sleep(1.0)


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = STREAMS + 2000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY
                                                    else want, hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print("# SSE: %d streams over %d ticker jobs (a line every %d ms each) on one jobgate-logs; "
          "ulimit -n %d (hard %s); %d CPUs; load %s"
          % (STREAMS, JOBS, INTERVAL_MS, nofile, hard, os.cpu_count() or 0,
             " ".join("%.2f" % x for x in os.getloadavg())), flush=True)
    if nofile < STREAMS + 200:
        print("  note: ulimit -n %d is below what %d streams need; expect refusals" % (nofile, STREAMS))
    t_start = time.monotonic()
    harness.install_signal_handlers()
    # nginx holds two connections per stream (client, FastCGI). Its workers cannot raise their
    # fd limit above the hard limit without CAP_SYS_RESOURCE, and the harness sets
    # worker_rlimit_nofile to 2 x worker_connections + 100: enough workers that the streams fit
    # twice over (accepts are not spread evenly).
    wc = min(2 * STREAMS + 1024, max(1024, ((hard if hard != resource.RLIM_INFINITY
                                                  else 1 << 20) - 200) // 2))
    nginx_workers = max(2, -(-4 * STREAMS // wc))
    s = harness.Stack(name="sse", programs=("submit", "status", "logs"), threads=8, grace=2,
                      nginx_workers=nginx_workers, nginx_worker_connections=wc,
                      front=os.environ.get("FRONT", "nginx"), apache_workers=STREAMS + 100,
                      program_args=("--max-streams", str(STREAMS + 100)))
    try:
        run(s, nginx_workers, wc)
    finally:
        problems = s.stop(check=False)
        if problems:
            print("  stack problems (see the kept logs):\n    " + "\n    ".join(
                p.splitlines()[0] for p in problems))
    print("  (SSE part took %.0f s, stack stopped)" % (time.monotonic() - t_start), flush=True)


def run(s, nginx_workers, wc):
    ticker = os.path.join(s.dir, "ticker.py")
    with open(ticker, "w") as f:
        f.write(TICKER)
    s.start_worker(queues=(QUEUE,), types={"ticker": "exec python3 -u " + ticker},
                   concurrency=JOBS, grace=1)
    jobs = [s.submit(type="ticker", queue=QUEUE, timeout=JOB_LIFETIME + 60,
                     payload={"ms": INTERVAL_MS, "for_s": JOB_LIFETIME,
                              "phase_ms": 0 if BURST else i * INTERVAL_MS // JOBS})["id"]
            for i in range(JOBS)]
    for j in jobs:
        s.wait_status(j, "running", timeout=30)
    # "running" comes before the job's interpreter is up: 100 Pythons starting at once take the
    # CPU for seconds on 2 cores. Lines are timed once every job prints (steady state).
    t_up = time.monotonic()
    for j in jobs:
        harness.wait_until(lambda j=j: b"tick " in s.request(
            "GET", "/jobs/%s/logs?limit=20" % j).body, 60, "a tick of job " + j, interval=0.1)
    up_s = time.monotonic() - t_up
    pid = s.program_pids("logs")[0]
    time.sleep(1.0)
    rss0, fds0 = rss_kb(pid), fd_count(pid)

    c = Client(s.port)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < OPEN_TIMEOUT:
        while n < STREAMS and c.pending() < OPEN_BATCH:
            c.connect(jobs[n % JOBS], (n // JOBS) % SAMPLE == 0)   # every job has timed viewers
            n += 1
        c.poll(0.05)
        if n >= STREAMS and c.pending() == 0:
            break
    open_s = time.monotonic() - t0
    settle = time.monotonic() + 2.0
    while time.monotonic() < settle:
        c.poll(0.05)
    held_before = len([x for x in c.streams.values() if x.state == "open"])
    rss1, fds1 = rss_kb(pid), fd_count(pid)
    cpu_logs0, cpu_me0 = cpu_s(pid), time.process_time()
    # who else uses the 2 cores meanwhile: the CPU of each part of the path, over the window
    wpid = s.workers[0].proc.pid
    parts = [("jobgate-logs", [pid]), ("nginx", tree(s.nginx_proc.pid)),
             ("redis", [s.redis_proc.pid]), ("worker", [wpid]),
             ("ticker jobs", [p for p in tree(wpid) if p != wpid])]
    parts_cpu0 = [cpu_s(pids) for _, pids in parts]

    split = c.split_off() if SPLIT else None
    plain = []
    t_win = time.monotonic()
    until = t_win + WINDOW
    th = threading.Thread(target=plain_requests, args=(s, jobs[0], until - 0.5, plain),
                          daemon=True)
    th.start()
    c.measuring = True
    while time.monotonic() < until:
        c.poll(0.05)
    c.measuring = False
    win = time.monotonic() - t_win
    other = None
    if split:
        cpid, stop_w, res_r = split
        os.close(stop_w)
        got = os.read(res_r, 64).split()
        os.close(res_r)
        cpu_other = os.wait4(cpid, 0)[2]
        cpu_other = cpu_other.ru_utime + cpu_other.ru_stime
        other = (int(got[0]), int(got[1])) if len(got) == 2 else None
    th.join(15)
    cpu_logs = cpu_s(pid) - cpu_logs0
    parts_cpu = [cpu_s(pids) - c0 for (_, pids), c0 in zip(parts, parts_cpu0)]
    cpu_me = time.process_time() - cpu_me0
    held_after = len([x for x in c.streams.values() if x.state == "open"])
    timed_here = len(c.streams)
    delivered = c.window_lines + (other[0] if other else 0)
    if split:
        held_after += c.untimed - (other[1] if other else 0)
    rss2 = rss_kb(pid)
    alive = s.procs["logs"][0].alive()
    nginx_err = open(s.front_error_log, errors="replace").read()
    nginx_short = sum(nginx_err.count(x) for x in ("worker_connections are not enough",
                                                    "Too many open files"))
    c.close_all()
    lat = sorted(c.lat)
    if DUMP:
        with open(os.path.join(DUMP, "client.txt"), "w") as f:
            f.writelines("%d %d %d\n" % x for x in c.samples)
        with open(os.path.join(DUMP, "logs.txt"), "w") as f:
            f.write(s.program_log("logs"))

    print("  every ticker job printing %.1f s after all were running; streams opened: %d of %d "
          "in %.1f s%s" % (
        up_s, c.opened, STREAMS, open_s,
        "" if not c.refused else "; not opened: " + ", ".join(
            "%s x%d" % kv for kv in sorted(c.refused.items(), key=lambda kv: -kv[1]))))
    print("  held: %d after 2 s, %d at the end of the %.0f s window (%d lost meanwhile)"
          % (held_before, held_after, win, c.lost + (other[1] if other else 0)))
    print("  jobgate-logs (pid %d) RSS: %.1f MiB idle -> %.1f MiB with the streams held "
          "(%+.2f KiB per stream), %.1f MiB at the end; fds %d -> %d"
          % (pid, rss0 / 1024, rss1 / 1024, (rss1 - rss0) / max(1, held_before),
             rss2 / 1024, fds0, fds1))
    if lat:
        print("  live line, job's print -> client's read: p50 %.1f ms, p90 %.1f ms, "
              "p99 %.1f ms, max %.1f ms (%d lines on %d sampled streams)"
              % (pct(lat, 50), pct(lat, 90), pct(lat, 99), lat[-1], len(lat),
                 (STREAMS + SAMPLE - 1) // SAMPLE))
        iv = INTERVAL_MS * 1000000
        phases = sorted({p % iv for p, _, _ in c.samples})
        gap = max([b - a for a, b in zip(phases, phases[1:])] + [phases[0] + iv - phases[-1]])
        print("    the jobs print %s: their lines fall within %.0f ms of each %d ms"
              % ("at once (BENCH_SSE_BURST=1)" if BURST else "spread evenly over the interval",
                 (iv - gap) / 1e6, INTERVAL_MS))
        print("    its parts: print -> stored by Redis (the entry's ts, ms resolution: the worker's "
              "read and log.lua) p50 %.1f, p99 %.1f ms; stored -> client's read (PUBLISH, "
              "jobgate-logs, nginx, this client) p50 %.1f, p99 %.1f ms; of which this client's "
              "own lag (arrival in its socket -> read) p50 %.2f, p99 %.2f ms"
              % (pct(sorted(c.to_redis), 50), pct(sorted(c.to_redis), 99),
                 pct(sorted(c.from_redis), 50), pct(sorted(c.from_redis), 99),
                 pct(sorted(c.in_client), 50), pct(sorted(c.in_client), 99)))
    else:
        print("  live line latency: no tick line arrived on the sampled streams")
    cpus = list(zip([n for n, _ in parts], parts_cpu)) + [("this client", cpu_me)]
    if split and other:
        cpus.append(("the nice-19 client", cpu_other))
    print("  CPU in the window (2 cores = 200%%): %s"
          % ", ".join("%s %.0f%%" % (n, 100 * c_ / win) for n, c_ in cpus))
    print("  lines delivered in the window: about %.0f/s to clients (%d jobs x %.1f/s x %d "
          "viewers each); CPU in the window: jobgate-logs %.0f%%, this client %.0f%%"
          % (JOBS * 1000.0 / INTERVAL_MS * STREAMS / JOBS, JOBS, 1000.0 / INTERVAL_MS,
             STREAMS // JOBS, 100 * cpu_logs / win, 100 * cpu_me / win))
    if split:
        print("  client: the %d timed streams read here; the %d others by a second process at "
              "nice 19: %s"
              % (timed_here, c.untimed,
                 "%d lines read in the window (%.0f/s), %d closed" % (other[0], other[0] / win,
                                                                      other[1])
                 if other else "no answer from it"))
    else:
        print("  client: every stream read by this one process (BENCH_SSE_SPLIT=0)")
    print("  lines read by the clients in the window: %d (%.0f/s); jobgate-logs CPU per 1,000 "
          "of them: %s" % (delivered, delivered / win,
                           "%.1f ms" % (1e6 * cpu_logs / delivered) if delivered else "-"))
    ok = [ms for st, ms in plain if st == 200]
    print("  plain GET /api/jobs/{id}/logs?limit=5 meanwhile (same jobgate-logs): %d of %d "
          "answered 200%s"
          % (len(ok), len(plain),
             ", %.1f ms median, %.1f ms max" % (sorted(ok)[len(ok) // 2], max(ok)) if ok else "")
          + ("" if len(ok) == len(plain) else "; others: %r" % [p for p in plain if p[0] != 200]))
    front = ("nginx: %d workers x %d worker_connections" % (nginx_workers, wc)
             if s.front == "nginx" else "apache: %d threads" % s.apache_workers)
    print("  jobgate-logs still running: %s; %s, %d fd/connection shortages logged"
          % ("yes" if alive else "NO (exit %s)" % s.procs["logs"][0].returncode, front,
             nginx_short))


if __name__ == "__main__":
    main()
