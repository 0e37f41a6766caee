"""Apache itself as the front end (apache/jobgate.conf, issue 13): log streams through Apache are
unbuffered (a line a job prints reaches the client within 250 ms, p99), and one Apache with
enough threads holds 1,000 parked log streams that all see their job's end. (What the programs
see through Apache, its JSON 503s and every HTTP suite behind it: test_fronts and the
apache: pass of run.py.)"""

import json
import os
import selectors
import socket
import sys
import time

import harness
from harness import check, eq

FRONTS = ("apache",)

# A job that prints `tick <n> <wall-clock ns>` every 20 ms, unbuffered.
TICKER = r"""
import sys, time
for n in range(1, %d + 1):
    print("tick %%d %%d" %% (n, time.time_ns()), flush=True)
    time.sleep(0.02)
"""


def _sse_open(port, path):
    c = socket.create_connection(("127.0.0.1", port), timeout=30)
    c.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
               % path).encode())
    return c


def test_live_log_lines_reach_the_client_within_250_ms_p99():
    s = harness.stack()
    lines = 150
    script = os.path.join(s.dir, "ticker.py")
    with open(script, "w") as f:
        f.write(TICKER % lines)
    q = harness.unique_queue("tick")
    jid = s.submit(type="ticker", queue=q)["id"]
    c = _sse_open(s.port, "/api/jobs/%s/logs" % jid)
    buf, lat, ended = b"", [], False
    s.start_worker(queues=(q,), types={"ticker": "%s %s" % (sys.executable, script)})
    deadline = time.monotonic() + 60
    while not ended and time.monotonic() < deadline:
        chunk = c.recv(65536)
        now = time.time_ns()
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.startswith(b"event: end"):
                ended = True
            if line.startswith(b"data: ") and b'"tick ' in line:
                entry = json.loads(line[6:])
                sent = int(entry["line"].split()[2])
                lat.append((now - sent) / 1e6)
    c.close()
    check(ended, "the stream through Apache ended with event: end")
    eq(len(lat), lines, "tick lines received through Apache")
    lat.sort()
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
    sys.stdout.write("# live line through Apache: p50 %.1f ms, p99 %.1f ms\n" % (p50, p99))
    check(p99 <= 250, "live lines through Apache within 250 ms p99 (p50 %.1f ms)" % p50,
          "p99 %.1f ms" % p99)


def test_1000_parked_log_streams_are_held_and_each_sees_the_end():
    n = 1000
    # every open stream holds one Apache thread: 1,152 threads (18 children x 64)
    with harness.Stack(programs=("submit", "status", "logs"), name="apache1000",
                       apache_workers=n + 100) as s:
        q = harness.unique_queue("held")
        jid = s.submit(type="echo", queue=q, payload={"x": 1})["id"]
        sel = selectors.DefaultSelector()
        bufs = {}
        try:
            for i in range(n):
                c = _sse_open(s.port, "/api/jobs/%s/logs" % jid)
                c.setblocking(False)
                bufs[c] = b""
                sel.register(c, selectors.EVENT_READ)

            def pump(want, what, timeout):
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if sum(1 for b in bufs.values() if want in b) == n:
                        return
                    for key, _ in sel.select(0.5):
                        try:
                            chunk = key.fileobj.recv(65536)
                        except BlockingIOError:
                            continue
                        if not chunk:
                            sel.unregister(key.fileobj)
                            continue
                        bufs[key.fileobj] += chunk
                got = sum(1 for b in bufs.values() if want in b)
                raise AssertionError("%s: expected all %d streams, got %d" % (what, n, got))
            pump(b"event: status", "streams through Apache with their first status event", 60)
            heads = {b.split(b"\r\n", 1)[0] for b in bufs.values()}
            eq(heads, {b"HTTP/1.1 200 OK"}, "status lines of the 1,000 streams")
            # held: a plain request meanwhile, then the job runs and every stream sees its end
            eq(s.request("GET", "/jobs/" + jid).status, 200, "a plain GET while 1,000 are held")
            check(not any(b"event: end" in b for b in bufs.values()),
                  "no stream ended before the job ran")
            s.start_worker(queues=(q,), types=("echo",))
            pump(b"event: end", "streams that saw the job's end", 60)
        finally:
            for c in bufs:
                c.close()
            sel.close()
