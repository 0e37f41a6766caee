#!/usr/bin/env python3
"""frontcost.py — what nginx itself spends per proxied request, per configuration knob.

Starts one stack (tests/harness.py: Redis, jobgate-submit and jobgate-status under spawn-fcgi),
then one extra nginx per variant of the shipped nginx/jobgate.conf and jobgate-upstreams.conf
(each variant is the shipped text with one knob changed), all proxying to the same programs.
Then, per variant:

  (default) CPU µs of nginx (master + workers, from /proc) per request under wrk, for nginx's own
            `return 200`, GET /api/jobs/{id} and POST /api/jobs; the variants take turns run by
            run (ROUNDS rounds, order rotated), so the machine's load hits them alike; wrk's own
            CPU per request is printed too. Noisy on a shared machine: read ranges.
  --callgrind  nginx (one process, master_process off) under valgrind's callgrind: instructions
            per request over N sequential requests on one kept-alive connection (the difference of
            a run of N and a run of N/4, so start-up cancels out). Repeatable.
  --strace  system calls per request of the nginx worker (strace -c -f) under wrk -c8.

    /usr/bin/python3 bench/frontcost.py [--variants shipped,params,...] [--rounds 3]
        [--duration 3] [--callgrind [--n 2000]] [--strace] [--routes get,post,ceiling]

Prints figures; asserts nothing.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import time

from measure import ROOT, cpu_s, harness, tree, wrk

NGINX_CONF = os.path.join(ROOT, "nginx", "jobgate.conf")

# The parameters nginx's own fastcgi_params file adds to the 5 jobgate.conf sends (the
# "allparams" variant: nginx/jobgate.conf before it sent only what the programs read).
MORE_PARAMS = """    fastcgi_param  DOCUMENT_URI       $document_uri;
    fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
    fastcgi_param  QUERY_STRING       $query_string;
    fastcgi_param  SERVER_PROTOCOL    $server_protocol;
    fastcgi_param  REQUEST_SCHEME     $scheme;
    fastcgi_param  HTTPS              $https if_not_empty;
    fastcgi_param  GATEWAY_INTERFACE  CGI/1.1;
    fastcgi_param  SERVER_SOFTWARE    nginx/$nginx_version;
    fastcgi_param  REMOTE_PORT        $remote_port;
    fastcgi_param  SERVER_ADDR        $server_addr;
    fastcgi_param  SERVER_PORT        $server_port;
    fastcgi_param  SERVER_NAME        $server_name;
"""


def all_params(loc):
    return loc.replace("    fastcgi_param  HTTP_PROXY", MORE_PARAMS + "    fastcgi_param  HTTP_PROXY", 1)


# The request headers the programs read (HTTP_* in shared/, handlers/), for the "headers"
# variant: fastcgi_pass_request_headers off and these passed one by one.
READ_HEADERS = ("authorization", "if_none_match", "idempotency_key", "accept", "last_event_id",
                "origin", "x_forwarded_for")


def only_read_headers(loc):
    add = "".join("    fastcgi_param  HTTP_%s $http_%s if_not_empty;\n" % (h.upper(), h)
                  for h in READ_HEADERS)
    return loc.replace("    fastcgi_param  HTTP_PROXY", "    fastcgi_pass_request_headers off;\n"
                       + add + "    fastcgi_param  HTTP_PROXY", 1)


def hot_regex_last(loc):
    """The GET /api/jobs/{id} regex location moved after the other /api/jobs/ regexes (where it
    was before nginx/jobgate.conf put it first)."""
    m = re.search(r"\n    # GET/HEAD /api/jobs/\{id\}.*?\n    \}\n", loc, re.S)
    if m is None:
        sys.exit("frontcost: nginx/jobgate.conf has no GET /api/jobs/{id} block")
    block = m.group(0)
    loc = loc.replace(block, "\n")
    at = loc.index("\n    # GET/HEAD/PUT/DELETE /api/cache/")
    return loc[:at] + block + loc[at:]


# name -> (what it changes, fn(location text, upstream text, top-level conf text) -> the three)
VARIANTS = {
    "shipped": ("nginx/jobgate.conf as shipped", lambda l, u, t: (l, u, t)),
    "allparams": ("the 17 fastcgi_params of nginx's fastcgi_params file, not the 5 read",
                  lambda l, u, t: (all_params(l), u, t)),
    "nolog": ("access_log off",
              lambda l, u, t: (l, u, re.sub(r"access_log [^;]*;", "access_log off;", t))),
    "logbuf": ("access_log buffer=64k flush=1s",
               lambda l, u, t: (l, u, re.sub(r"(access_log [^;]*) jobgate;",
                                             r"\1 jobgate buffer=64k flush=1s;", t))),
    "kareq": ("upstream keepalive_requests 100000 (default 1000)",
              lambda l, u, t: (l, re.sub(r"(keepalive \d+;)", r"\1 keepalive_requests 100000;", u), t)),
    "clientkareq": ("client keepalive_requests 100000 (default 1000)",
                    lambda l, u, t: (l, u, t.replace("server_name localhost;",
                                                     "server_name localhost; keepalive_requests 100000;"))),
    "pcrejit": ("pcre_jit on (main context)",
                lambda l, u, t: (l, u, t.replace("daemon off;", "daemon off;\npcre_jit on;"))),
    "nobuffering": ("fastcgi_buffering off for the API",
                    lambda l, u, t: (l.replace("fastcgi_keep_conn on;",
                                               "fastcgi_keep_conn on; fastcgi_buffering off;"), u, t)),
    "buf1k": ("fastcgi_buffer_size 1k, fastcgi_buffers 4 1k",
              lambda l, u, t: (l.replace("fastcgi_keep_conn on;",
                                         "fastcgi_keep_conn on; fastcgi_buffer_size 1k; "
                                         "fastcgi_buffers 4 1k;"), u, t)),
    "multiaccept": ("multi_accept on",
                    lambda l, u, t: (l, u, re.sub(r"events \{", "events { multi_accept on;", t))),
    "w1": ("worker_processes 1", lambda l, u, t: (l, u, re.sub(r"worker_processes \d+;",
                                                               "worker_processes 1;", t))),
    "affinity": ("worker_cpu_affinity auto",
                 lambda l, u, t: (l, u, re.sub(r"(worker_processes \d+;)",
                                               r"\1\nworker_cpu_affinity auto;", t))),
    "headers": ("fastcgi_pass_request_headers off, the 7 headers the programs read passed",
                lambda l, u, t: (only_read_headers(l), u, t)),
    "postvar": ("POST /api/jobs's upstream a variable chosen by set and if (as before)",
                lambda l, u, t: (l.replace("""        if ($request_method = GET)  { fastcgi_pass jobgate_admin; }
        if ($request_method = HEAD) { fastcgi_pass jobgate_admin; }
        fastcgi_pass jobgate_submit;""", """        set $jobgate_program submit;
        if ($request_method = GET)  { set $jobgate_program admin; }
        if ($request_method = HEAD) { set $jobgate_program admin; }
        fastcgi_pass jobgate_$jobgate_program;"""), u, t)),
    "regexlast": ("the GET /api/jobs/{id} regex location after the cancel/logs/retry ones",
                  lambda l, u, t: (hot_regex_last(l), u, t)),
    "errlog": ("access log of errors only (if=, status >= 400)",
               lambda l, u, t: (l, u, re.sub(
                   r"(access_log [^;]*) jobgate;",
                   r"map $status $jobgate_err { ~^[23] 0; default 1; }\n    \1 jobgate if=$jobgate_err;",
                   t))),
}

# --browser: what a browser adds to each request (about 700 bytes, a site's cookies included)
BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Safari/537.36",
    "Accept": "*/*",
    "Accept-Language": "en-GB,en;q=0.9,fr;q=0.8",
    "Accept-Encoding": "gzip, deflate, br, zstd",
    "Referer": "https://example.org/app/orders/1234",
    "Cookie": "session=5f0c6ad2b1e94e0c8a7d3b2f1c0e9d8a; theme=dark; _ga=GA1.1.123456789.1700000000; "
              "consent=analytics%3D0%26ads%3D0",
    "Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin",
    "sec-ch-ua": '"Chromium";v="131", "Not_A Brand";v="24"', "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Linux"', "Priority": "u=1, i",
}
EXTRA_HEADERS = {}

CEILING = "location = /bench/ceiling { return 200 \"ok\\n\"; }"
POST_LUA = """wrk.method = "POST"
wrk.body = '{"type":"echo","queue":"bench","payload":{"n":1}}'
wrk.headers["Content-Type"] = "application/json"
"""


class Front:
    """One extra nginx with a variant of the shipped config, on its own port and directory."""

    def __init__(self, s, name, single=False):
        self.name = name
        self.dir = os.path.join(s.dir, "front-" + name)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.port = harness.free_port()
        with open(NGINX_CONF) as f:
            loc = f.read()
        up = harness.upstreams_conf(s.dir)
        top = harness.nginx_conf(self.dir, self.port, s.dir, CEILING, workers=2)
        for d in ("body", "fastcgi", "proxy", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.dir, "nginx-tmp", d), exist_ok=True)
        if single:   # one process, for valgrind
            top = top.replace("master_process on;", "master_process off;")
            top = re.sub(r"worker_processes \d+;", "worker_processes 1;", top)
        loc, up, top = VARIANTS[name][1](loc, up, top)
        with open(os.path.join(self.dir, "jobgate.conf"), "w") as f:
            f.write(loc)
        with open(os.path.join(self.dir, "jobgate-upstreams.conf"), "w") as f:
            f.write(up)
        top = top.replace("include %s;" % NGINX_CONF,
                          "include %s;" % os.path.join(self.dir, "jobgate.conf"))
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(top)
        self.proc = None

    def argv(self):
        return ["nginx", "-p", self.dir + "/", "-c", self.conf,
                "-e", os.path.join(self.dir, "nginx-error.log")]

    def start(self, prefix=()):
        self.proc = subprocess.Popen(list(prefix) + self.argv(), stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr.log"), "w"))
        harness.wait_until(lambda: self.accepts() or self.proc.poll() is not None, 120, "nginx " + self.name)
        if self.proc.poll() is not None:
            sys.exit("frontcost: nginx %s exited: %s" % (
                self.name, open(os.path.join(self.dir, "stderr.log")).read()))
        return self

    def accepts(self):
        import socket
        try:
            socket.create_connection(("127.0.0.1", self.port), 1).close()
            return True
        except OSError:
            return False

    def pids(self):
        return tree(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # nginx exits (callgrind writes its file)
            for _ in range(60):
                try:
                    self.proc.wait(1)
                    return
                except subprocess.TimeoutExpired:
                    # under valgrind a signal that lands just before epoll_wait waits for its
                    # end: a connection wakes it
                    self.accepts()
            self.proc.kill()
            self.proc.wait()


def combined(names):
    """A variant that applies several others in turn: "a+b+c"."""
    def fn(l, u, t):
        for nm in names:
            l, u, t = VARIANTS[nm][1](l, u, t)
        return l, u, t
    return (" + ".join(names), fn)


def routes(s, job_id, lua, wanted):
    get = None
    if EXTRA_HEADERS:
        get = os.path.join(s.dir, "get.lua")
        with open(get, "w") as f:
            f.write(lua_headers())
    all_ = [("ceiling", "/bench/ceiling", get), ("GET", "/api/jobs/" + job_id, get),
            ("POST", "/api/jobs", lua)]
    return [r for r in all_ if r[0].lower() in wanted]


def lua_headers():
    return "".join("wrk.headers[%s] = %s\n" % (lua_str(k), lua_str(v))
                   for k, v in EXTRA_HEADERS.items())


def lua_str(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cpu_runs(s, fronts, rts, rounds, duration, connections):
    res = {}   # (variant, route) -> [µs nginx, µs wrk, rps]
    for rnd in range(rounds):
        order = fronts[rnd % len(fronts):] + fronts[:rnd % len(fronts)]
        for fr in order:
            for rname, path, script in rts:
                pids = fr.pids()
                before = cpu_s(pids)
                r = wrk("http://127.0.0.1:%d%s" % (fr.port, path), duration, connections, 2, script)
                n = max(1, r["requests"])
                res.setdefault((fr.name, rname), []).append(
                    (1e6 * (cpu_s(pids) - before) / n, 1e6 * r["cpu"] / n, r["rps"],
                     r["non2xx"] + r["errors"]))
    print("\nnginx CPU µs per request (wrk -t2 -c%d, %d s a run, %d rounds, load now %s)"
          % (connections, duration, rounds, open("/proc/loadavg").read().split()[0]))
    print("%-13s %-8s %18s %18s %20s %6s" % ("variant", "route", "nginx µs/req", "wrk µs/req",
                                             "req/s", "errors"))
    for fr in fronts:
        for rname, _, _ in rts:
            xs = res[(fr.name, rname)]
            rng = lambda i, f: "%s–%s" % (f % min(x[i] for x in xs), f % max(x[i] for x in xs))
            print("%-13s %-8s %18s %18s %20s %6d" % (fr.name, rname, rng(0, "%.1f"), rng(1, "%.1f"),
                                                    rng(2, "%.0f"), sum(x[3] for x in xs)))


def sequential(port, method, path, n, body=None):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    hdrs = dict(EXTRA_HEADERS)
    if body:
        hdrs["Content-Type"] = "application/json"
    for _ in range(n):
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        r.read()
        if r.status >= 400:
            sys.exit("frontcost: %s %s -> %d" % (method, path, r.status))
    c.close()


def callgrind_runs(s, names, job_id, n, wanted):
    body = '{"type":"echo","queue":"bench","payload":{"n":1}}'
    reqs = [r for r in (("ceiling", "GET", "/bench/ceiling", None),
                        ("GET", "GET", "/api/jobs/" + job_id, None),
                        ("POST", "POST", "/api/jobs", body)) if r[0].lower() in wanted]
    print("\nnginx instructions per request (callgrind, one process, sequential keep-alive "
          "requests; (N) - (N/4) runs)")
    print("%-13s %s" % ("variant", " ".join("%12s" % r[0] for r in reqs)))
    for name in names:
        row = []
        for rname, method, path, b in reqs:
            tot = []
            for count in (n // 4, n):
                fr = Front(s, name, single=True)
                out = os.path.join(fr.dir, "cg.out")
                fr.start(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                          "--log-file=" + os.path.join(fr.dir, "vg.log")])
                sequential(fr.port, method, path, count, b)
                fr.stop()
                text = open(out).read() if os.path.exists(out) else ""
                m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
                if m is None:
                    sys.exit("frontcost: no callgrind totals for %s %s:\n%s" % (
                        name, rname, open(os.path.join(fr.dir, "vg.log")).read()[-2000:]
                        + open(os.path.join(fr.dir, "nginx-error.log")).read()[-2000:]))
                tot.append(int(m.group(1)))
            row.append((tot[1] - tot[0]) / (n - n // 4))
        print("%-13s %s" % (name, " ".join("%12.0f" % x for x in row)), flush=True)


def strace_runs(s, fronts, rts, duration):
    print("\nnginx system calls per request (strace -c -f on the workers, wrk -t1 -c8)")
    for fr in fronts:
        for rname, path, script in rts:
            workers = [p for p in fr.pids() if p != fr.proc.pid]
            out = os.path.join(fr.dir, "strace-%s.txt" % rname)
            argv = ["strace", "-c", "-f", "-o", out]
            for p in workers:
                argv += ["-p", str(p)]
            st = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
            time.sleep(1)
            r = wrk("http://127.0.0.1:%d%s" % (fr.port, path), duration, 8, 1, script)
            st.send_signal(signal.SIGINT)
            st.wait(30)
            n = max(1, r["requests"])
            calls = {}
            for line in open(out):
                m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
                if m and m.group(2) != "total":
                    calls[m.group(2)] = int(m.group(1))
            tot = sum(calls.values())
            print("%-13s %-8s %5.2f: %s" % (fr.name, rname, tot / n, ", ".join(
                "%s %.2f" % (k, v / n) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
                if v / n >= 0.01)), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--routes", default="ceiling,get,post")
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--browser", action="store_true",
                    help="send a browser's headers (cookies included) with each request")
    a = ap.parse_args()
    if a.browser:
        EXTRA_HEADERS.update(BROWSER)
    names = a.variants.split(",")
    for nm in names:
        if "+" in nm and nm not in VARIANTS:
            VARIANTS[nm] = combined(nm.split("+"))
        if nm not in VARIANTS:
            sys.exit("frontcost: unknown variant %s (%s)" % (nm, ", ".join(VARIANTS)))
    wanted = a.routes.lower().split(",")
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin"
    harness.install_signal_handlers()
    for nm in names:
        print("  %-13s %s" % (nm, VARIANTS[nm][0]))
    with harness.Stack(name="frontcost", threads=8, programs=("submit", "status")) as s:
        job = s.submit(type="echo", queue="bench", payload={"bench": True})
        lua = os.path.join(s.dir, "post.lua")
        with open(lua, "w") as f:
            f.write(POST_LUA + lua_headers())
        if a.callgrind:
            callgrind_runs(s, names, job["id"], a.n, wanted)
            return
        fronts = [Front(s, nm).start() for nm in names]
        try:
            rts = routes(s, job["id"], lua, wanted)
            if a.strace:
                strace_runs(s, fronts, rts, a.duration)
            else:
                cpu_runs(s, fronts, rts, a.rounds, a.duration, a.connections)
        finally:
            for fr in fronts:
                fr.stop()


if __name__ == "__main__":
    main()
