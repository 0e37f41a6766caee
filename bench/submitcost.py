#!/usr/bin/env python3
"""submitcost.py — what one POST /jobs costs: jobgate-submit's instructions (callgrind) and
Redis' side (round trips, commands, µs), per kind of submit.

Starts a private redis-server and jobgate-submit under valgrind's callgrind (one thread), both on
unix sockets of a temporary directory, and for each kind of submit sends N POSTs over one
kept-alive FastCGI connection (as nginx's keepalive upstream does), counting only those:

- plain:  {"type":"echo","payload":{"n":i}}
- cache:  the same with "cache":true (a miss each time: a new payload)
- hit:    "cache":true with a payload whose result is in the result cache
- idem:   plain with a new Idempotency-Key each time

Prints per POST: jobgate-submit's instructions (the program, json-c, hiredis, OpenSSL,
libc; not the kernel; repeatable, unlike time on a shared machine), Redis round trips (the reads
Redis processed, INFO stats' total_reads_processed: a pipeline is one), the commands the program
sent (MONITOR over 20 more POSTs), Redis' own µs for them (INFO commandstats: a script's usec
includes the commands it runs; noisy) and the commands run inside scripts.

    /usr/bin/python3 bench/submitcost.py [--n 2000] [--build build] [--kinds plain,cache,hit,idem]
"""

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from measure import ROOT, harness, stop  # noqa: E402  (tests/ on the path)



def reads(r):
    """Reads Redis processed from its clients: with one client sending each pipeline in one
    write, its round trips."""
    for line in r.call("INFO", "stats").splitlines():
        if line.startswith("total_reads_processed:"):
            return int(line.split(":")[1])
    raise SystemExit("submitcost: no total_reads_processed in INFO stats")


def commandstats(r):
    out = {}
    for line in r.call("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            kv = dict(p.split("=") for p in rest.split(","))
            out[name] = (int(kv["calls"]), float(kv["usec"]))
    return out


class Monitor:
    """MONITOR on its own connection: counts the commands a client sent (not those of scripts,
    which MONITOR marks "[0 lua]")."""

    def __init__(self, sock):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(sock)
        self.s.sendall(b"MONITOR\r\n")
        self.buf, self.lines = b"", []
        while b"\r\n" not in self.buf:
            self.buf += self.s.recv(4096)
        self.buf = self.buf.split(b"\r\n", 1)[1]
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.s.settimeout(0.2)
        while not self.stop:
            try:
                b = self.s.recv(65536)
            except socket.timeout:
                continue
            if not b:
                break
            self.buf += b
            *done, self.buf = self.buf.split(b"\r\n")
            self.lines.extend(done)

    def take(self):
        time.sleep(0.5)
        got, self.lines = self.lines, []
        return got

    def close(self):
        self.stop = True
        self.t.join()
        self.s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--kinds", default="plain,cache,hit,idem")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="submitcost.", dir=os.path.join(ROOT, "run")
                         if os.path.isdir(os.path.join(ROOT, "run")) else None)
    procs = []
    try:
        rs = os.path.join(d, "redis.sock")
        procs.append(subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", rs,
                                       "--save", "", "--appendonly", "no", "--dir", d]
                                      + list(harness.REDIS_RECOMMENDED),
                                      stdout=subprocess.DEVNULL))
        harness.wait_until(lambda: harness.accepts(rs), 60, "redis-server")
        r = harness.Redis(unix=rs, timeout=120)
        env = dict(os.environ, REDIS_URL="unix://" + rs)
        sub = os.path.join(d, "submit.sock")
        cg = subprocess.Popen(["valgrind", "--tool=callgrind", "--log-file=" + d + "/vg.log",
                               "--callgrind-out-file=" + d + "/cg.%p",
                               os.path.join(a.build, "jobgate-submit"), "--socket", sub,
                               "--threads", "1"], env=env, stderr=subprocess.DEVNULL)
        procs.append(cg)
        harness.wait_until(lambda: harness.accepts(sub), 60, "jobgate-submit")
        s = harness.fcgi_connect(sub, timeout=120)
        hit_body = b'{"type":"echo","payload":{"hit":1},"cache":true}'
        # the cached result: the cache key as jobgate-submit computes it (POST /jobs answers it)
        seen = [0]

        def request(kind, i):
            hdr = {"Content-Type": "application/json"}
            if kind == "hit":
                body = hit_body
            else:
                body = ('{"type":"echo","payload":{"n":%d,"k":"%s"}%s}'
                        % (i, kind, ',"cache":true' if kind == "cache" else "")).encode()
            if kind == "idem":
                hdr["Idempotency-Key"] = "key-%d" % i
            return harness.fcgi_request_bytes(harness.fcgi_params("POST", "/api/jobs", body, hdr),
                                              body, keep_conn=True)

        def send(req):
            s.sendall(req)
            return harness.fcgi_read_response(s)

        first = send(request("plain", 0))
        if first.status != 202:
            raise SystemExit("submitcost: POST answered %r" % first)
        rh = send(request("hit", 0))
        r.call("SET", "jobgate:cache:" + rh.json()["cache_key"], '{"n":1}', "EX", 3600)
        results = []
        for kind in a.kinds.split(","):
            base = (seen[0] + 1) * 1000000
            seen[0] += 1
            for i in range(20):   # warm: the thread's Redis connection, the scripts, caches
                got = send(request(kind, base + i))
            want = 200 if kind == "hit" else 202
            if got.status != want:
                raise SystemExit("submitcost: %s POST answered %d, expected %d: %r"
                                 % (kind, got.status, want, got.body[:200]))
            mon = Monitor(rs)   # off again before the counted POSTs: it slows Redis down
            mon.take()
            for i in range(20):
                send(request(kind, base + 100 + i))
            trips = [ln for ln in mon.take() if b" lua]" not in ln]
            mon.close()
            subprocess.run(["callgrind_control", "-z", str(cg.pid)], check=True,
                           capture_output=True)
            r.call("CONFIG", "RESETSTAT")
            reads0 = reads(r)
            for i in range(a.n):
                send(request(kind, base + 1000 + i))
            st = commandstats(r)
            rtt = (reads(r) - reads0 - 2) / a.n   # less this client's own two INFO calls
            before = set(os.listdir(d))
            subprocess.run(["callgrind_control", "-d", str(cg.pid)], check=True,
                           capture_output=True)
            total = 0
            for f in sorted(set(os.listdir(d)) - before):
                if f.startswith("cg."):
                    for line in open(os.path.join(d, f)):
                        if line.startswith(("summary:", "totals:")):
                            total = int(line.split()[1])
            # top-level commands: those MONITOR saw from the program, by name
            top = {}
            for ln in trips:
                try:
                    name = ln.split(b'"')[1].decode().lower()
                except IndexError:
                    continue
                top[name] = top.get(name, 0) + 1
            usec = sum(st[c][1] for c in top if c in st) / a.n
            inner = sum(v[0] for k, v in st.items()
                        if k not in ("config|resetstat", "info")) / a.n - len(trips) / 20.0
            results.append((kind, total / a.n, rtt, len(trips) / 20.0,
                            ", ".join("%s %.2g" % (k, v / 20.0) for k, v in sorted(top.items())),
                            usec, inner))
        s.close()
        print("POST /api/jobs (%s; %d POSTs per kind on one kept-alive FastCGI connection, "
              "jobgate-submit under callgrind, one thread)" % (a.build, a.n))
        for kind, ins, rtt, sent, top, usec, inner in results:
            print("  %-5s jobgate-submit %6d instructions; Redis: %.2f round trips, %.2f commands "
                  "sent (%s), %.1f us, %.1f commands inside scripts"
                  % (kind, ins, rtt, sent, top, usec, inner))
    finally:
        stop(procs)
        if os.environ.get("SUBMITCOST_KEEP"):
            print("kept", d)
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
