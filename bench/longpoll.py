#!/usr/bin/env python3
"""longpoll.py — the long-poll latency of one jobgate-status behind the front (issue 15's long
poll aims). Part of `make bench`'s http part (bench.py calls run()); also runs by itself on its
own stack (`python3 bench/longpoll.py`). Prints figures; asserts nothing.

Two figures, both timed from the change: a job changes by `log.lua` with a new progress (the
script a worker runs; it bumps the version and PUBLISHes `job <id> <version>`), sent by this
client straight to Redis, and the clock starts when the script's reply is back here. A waiter's
answer is timed when its status line is read (time.monotonic_ns() right after recv).
  - one waiter, others idle: BENCH_LP_IDLE (1000) long polls parked on as many other jobs, and
    one waiter on the changed job; BENCH_LP_CHANGES (200) changes of it, one at a time (the
    waiter polls again with the new version after each answer): p50 / p99 / max;
  - fan-out: BENCH_WAITERS (1000) long polls on one job, then one change; BENCH_LP_ROUNDS (5)
    rounds: per round p50, p99 and the last waiter answered, and over all rounds.
The client is one epoll loop over raw non-blocking sockets (HTTP/1.1, Connection: close), so
that its own wake-ups cost little next to what is measured; its CPU in each test is printed.

The changed job is held `running` by a jobgate-worker (a type whose command sleeps), so that
log.lua accepts its fence; the idle waiters' jobs are delayed a day and never change.
"""

import os
import resource
import select
import socket
import time

from measure import ROOT, cpu_s, env, fd_count, harness, pct, rss_kb

WAITERS = env("BENCH_WAITERS", 1000)
IDLE = env("BENCH_LP_IDLE", 1000)
CHANGES = env("BENCH_LP_CHANGES", 200)
ROUNDS = env("BENCH_LP_ROUNDS", 5)
QUEUE = "lpbench"
PARK_SETTLE = 0.02     # s after a poll is sent before the change: nginx passes it, status parks it


class Polls:
    """Long polls in one epoll loop. Each: a socket, its request sent at connect, and the
    monotonic ns at which its status line arrived."""

    def __init__(self, port):
        self.port = port
        self.ep = select.epoll()
        self.socks = {}        # fd -> [sock, request bytes, sent, buf, tag]
        self.answers = []      # (tag, status, monotonic ns)

    def open(self, path, etag, tag):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        req = ("GET %s HTTP/1.1\r\nHost: bench\r\nIf-None-Match: \"%d\"\r\n"
               "Connection: close\r\n\r\n" % (path, etag)).encode()
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        self.socks[s.fileno()] = [s, req, False, b"", tag]
        self.ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN)

    def open_count(self):
        return len(self.socks)

    def sent_count(self):
        return sum(1 for x in self.socks.values() if x[2])

    def poll(self, timeout):
        for fd, ev in self.ep.poll(timeout):
            x = self.socks.get(fd)
            if x is None:
                continue
            s = x[0]
            if not x[2]:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self._done(fd, "connect failed", time.monotonic_ns())
                    continue
                try:
                    s.send(x[1])
                except OSError:
                    self._done(fd, "send failed", time.monotonic_ns())
                    continue
                x[2] = True
                self.ep.modify(fd, select.EPOLLIN)
                continue
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            now = time.monotonic_ns()
            if not data:
                self._done(fd, "closed", now)
                continue
            x[3] += data
            if b"\r\n" in x[3]:
                line = x[3].split(b"\r\n", 1)[0].split()
                self._done(fd, int(line[1]) if len(line) > 1 and line[1].isdigit() else "bad",
                           now)

    def _done(self, fd, status, now):
        x = self.socks.pop(fd)
        self.ep.unregister(fd)
        x[0].close()
        self.answers.append((x[4], status, now))

    def wait_answers(self, n, timeout):
        end = time.monotonic() + timeout
        while len(self.answers) < n and time.monotonic() < end:
            self.poll(0.05)

    def wait_sent(self, timeout):
        end = time.monotonic() + timeout
        while self.sent_count() < len(self.socks) and time.monotonic() < end:
            self.poll(0.02)

    def close(self):
        for x in self.socks.values():
            x[0].close()
        self.socks.clear()
        self.ep.close()


class Changer:
    """Changes a running job the way a worker reports progress: log.lua with a new progress."""

    def __init__(self, s, job_id):
        src = open(os.path.join(ROOT, "redis", "log.lua")).read()
        self.s = s
        self.sha = s.redis("SCRIPT", "LOAD", src)
        self.id = job_id
        tag = job_id.split(".", 1)[0]
        self.key = "jobgate:{%s}:job:%s" % (tag, job_id)
        self.log = "jobgate:{%s}:log:%s" % (tag, job_id)
        self.fence = s.redis("HGET", self.key, "fence")
        self.progress = int(s.redis("HGET", self.key, "progress") or 0)

    def version(self):
        return int(self.s.redis("HGET", self.key, "version"))

    def change(self):
        """One change; returns monotonic ns when the script's reply came back."""
        self.progress = self.progress % 100 + 1
        rep = self.s.redis("EVALSHA", self.sha, "2", self.key, self.log, self.id, self.fence,
                           "10000", "jobgate:{%s}:events" % self.id[:8], str(self.progress),
                           "")   # ARGV[6]: no line numbering (no lines)
        t = time.monotonic_ns()
        if not rep or rep[0] != 1:
            raise RuntimeError("log.lua refused the change: %r" % (rep,))
        return t


def held_job(s):
    """A job held running by a worker (its command sleeps), and its changer."""
    s.start_worker(queues=(QUEUE,), types={"hold": "sleep 3600"}, concurrency=1, grace=1)
    job = s.submit(type="hold", queue=QUEUE, timeout=3600)
    s.wait_status(job["id"], "running", timeout=30)
    return Changer(s, job["id"])


def one_among_idle(s, ch, stats):
    """IDLE waiters parked on other jobs, one on ch's job; CHANGES changes, one at a time."""
    idle_jobs = [s.submit(type="echo", queue=QUEUE + "-idle", delay=86400)
                 for _ in range(min(IDLE, 1000))]
    p = Polls(s.port)
    for i in range(IDLE):
        j = idle_jobs[i % len(idle_jobs)]
        p.open("/api/jobs/%s?wait=60" % j["id"], j["version"], "idle")
        if i % 200 == 199:
            p.wait_sent(10)
    p.wait_sent(20)
    time.sleep(1.0)
    p.poll(0)
    stats["idle_held"] = p.open_count()
    lat, bad = [], {}
    cpu0 = time.process_time()
    for _ in range(CHANGES):
        p.open("/api/jobs/%s?wait=60" % ch.id, ch.version(), "one")
        p.wait_sent(5)
        end = time.monotonic() + PARK_SETTLE
        while time.monotonic() < end:
            p.poll(0.005)
        n0 = len(p.answers)
        t = ch.change()
        p.wait_answers(n0 + 1, 10)
        got = [a for a in p.answers[n0:] if a[0] == "one"]
        if got and got[0][1] == 200:
            lat.append((got[0][2] - t) / 1e6)
        else:
            k = got[0][1] if got else "no answer"
            bad[k] = bad.get(k, 0) + 1
    stats["one_cpu"] = time.process_time() - cpu0
    stats["idle_answered"] = sum(1 for a in p.answers if a[0] == "idle")
    p.close()
    stats["one_lat"] = sorted(lat)
    stats["one_bad"] = bad


def fan_out(s, ch, pid, stats):
    """WAITERS long polls on ch's job, one change; ROUNDS times."""
    rounds = []
    stats["fan_cpu"] = 0.0
    for r in range(ROUNDS):
        p = Polls(s.port)
        v = ch.version()
        for i in range(WAITERS):
            p.open("/api/jobs/%s?wait=60" % ch.id, v, "fan")
            if i % 200 == 199:
                p.wait_sent(10)
        p.wait_sent(20)
        time.sleep(1.0)   # nginx passes them on, the program parks them
        p.poll(0)
        held = p.open_count()
        if r == 0:
            stats["fan_rss"] = rss_kb(pid)
            stats["fan_fds"] = fd_count(pid)
            t0 = time.monotonic()
            g = s.request("GET", "/jobs/" + ch.id)
            stats["plain"] = (g.status, (time.monotonic() - t0) * 1000)
        cpu0 = time.process_time()
        t = ch.change()
        p.wait_answers(WAITERS, 30)
        stats["fan_cpu"] += time.process_time() - cpu0
        lat = sorted((a[2] - t) / 1e6 for a in p.answers if a[1] == 200)
        statuses = {}
        for a in p.answers:
            statuses[a[1]] = statuses.get(a[1], 0) + 1
        rounds.append({"held": held, "lat": lat, "statuses": statuses})
        p.close()
    stats["rounds"] = rounds


def run(s, pid):
    """Runs both tests on stack s (jobgate-status pid); prints the figures."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = WAITERS + IDLE + 500
    if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    ch = held_job(s)
    rss0, fds0 = rss_kb(pid), fd_count(pid)
    stats = {}
    cpu_status0 = cpu_s(pid)
    if CHANGES > 0:
        print("bench: long poll: one waiter among %d idle ones, %d changes ..." % (IDLE, CHANGES),
              flush=True)
        one_among_idle(s, ch, stats)
        lat = stats["one_lat"]
        print("  idle waiters held: %d of %d (answered meanwhile: %d)"
              % (stats["idle_held"], IDLE, stats["idle_answered"]))
        if lat:
            print("  the one waiter, change -> answer: p50 %.2f ms, p99 %.2f ms, max %.2f ms "
                  "(%d changes%s; aim p99 <= 5 ms)"
                  % (pct(lat, 50), pct(lat, 99), lat[-1], len(lat),
                     "; not answered 200: %r" % stats["one_bad"] if stats["one_bad"] else ""))
    if WAITERS > 0 and ROUNDS > 0:
        print("bench: long poll: %d waiters on one job, one change per round, %d rounds ..."
              % (WAITERS, ROUNDS), flush=True)
        fan_out(s, ch, pid, stats)
        print("  status process RSS: %.1f MiB idle -> %.1f MiB with them parked; fds %d -> %d"
              % (rss0 / 1024, stats["fan_rss"] / 1024, fds0, stats["fan_fds"]))
        print("  a plain GET meanwhile: %d in %.1f ms" % stats["plain"])
        every = []
        for i, r in enumerate(stats["rounds"]):
            lat = r["lat"]
            every += lat
            print("  round %d: held %d, answers %s; change -> answer p50 %.1f ms, p99 %.1f ms, "
                  "last %.1f ms" % (i + 1, r["held"], r["statuses"], pct(lat, 50), pct(lat, 99),
                                    lat[-1] if lat else float("nan")))
        every.sort()
        lasts = sorted(r["lat"][-1] for r in stats["rounds"] if r["lat"])
        if every:
            print("  all rounds: p50 %.1f ms, p99 %.1f ms; the last waiter of a round: %s ms "
                  "(aim: all within 60 ms)"
                  % (pct(every, 50), pct(every, 99), ", ".join("%.1f" % x for x in lasts)))
    print("  CPU: jobgate-status %.2f s over both tests; this client %.2f s while timing"
          % (cpu_s(pid) - cpu_status0, stats.get("one_cpu", 0) + stats.get("fan_cpu", 0)))


def main():
    harness.install_signal_handlers()
    print("# long poll, load %s" % " ".join("%.2f" % x for x in os.getloadavg()), flush=True)
    with harness.Stack(name="lpbench", programs=("submit", "status"), threads=8, grace=2,
                       nginx_workers=2, nginx_worker_connections=2 * (WAITERS + IDLE) + 1024,
                       front=os.environ.get("FRONT", "nginx"),
                       apache_workers=WAITERS + IDLE + 256,
                       program_args=("--max-streams", str(max(10000, WAITERS + IDLE + 100)))) as s:
        run(s, s.program_pids("status")[0])
    print("bench: stack stopped")


if __name__ == "__main__":
    main()
