"""harness.py — starts real stacks for the HTTP tests: a private redis-server (loopback port and
unix socket), the jobgate web programs under spawn-fcgi, and a front end: nginx with the shipped
nginx/jobgate.conf included exactly as shipped (and nginx/jobgate-upstreams.conf with its socket
directory set), or Apache with the shipped apache/jobgate.conf (tests/apache_front.py). The front
is FRONT ("nginx" unless JOBGATE_FRONT says "apache"; run.py sets it per pass with set_pass()),
or Stack(front=...). Python 3 standard library only.

    s = harness.stack()                 # the shared default stack, started on first use
    r = s.request("POST", "/jobs", json={"type": "echo"})
    assert r.status == 202, r

    with harness.Stack(env={"JOBGATE_MAX_BODY": "100"}, name="small") as s2:
        ...                             # a private stack, stopped (and checked) on exit

Every process is started in its own process group with a parent-death signal, and is stopped
by Stack.stop(), by the atexit hook, and by the SIGTERM/SIGINT handler run.py installs, so
nothing outlives the test run. Stack.stop() scans every program's log for sanitizer reports
(ASan, UBSan, LeakSanitizer) and raises when it finds one.
"""

import atexit
import contextlib
import ctypes
import email.parser
import http.client
import json as jsonlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import apache_front

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("JOBGATE_BUILD", "build"))
NGINX_CONF = os.path.join(ROOT, "nginx", "jobgate.conf")
NGINX_UPSTREAMS = os.path.join(ROOT, "nginx", "jobgate-upstreams.conf")
SHIPPED_SOCKET_DIR = "/run/jobgate/"
JOBS_DIR = os.path.join(ROOT, "deploy", "examples", "jobs")
DEMO_TYPES = ("echo", "sleep", "lines", "fail", "flaky")
# The web programs the shared stack runs.
DEFAULT_PROGRAMS = ("submit", "status", "logs", "cache", "admin")
PREFIX = "/api"
FRONTS = ("nginx", "apache")
FRONT = os.environ.get("JOBGATE_FRONT", "nginx")
# The Redis the stacks run on, as FRONT is the front end: "single" (one redis-server per stack,
# the default) or "cluster" (a 3+3 Redis Cluster, tests/cluster.py, started once per test process
# and shared by its stacks, flushed before each test: see before_test()). JOBGATE_REDIS sets it;
# run.py sets it per pass with set_pass().
REDIS_KINDS = ("single", "cluster")
REDIS_KIND = os.environ.get("JOBGATE_REDIS", "single")
# The redis-server settings jobgate recommends to a site (README, "Redis"; docs/redis.md, "The job
# log"), given to every Redis the tests and benchmarks start, one or a cluster's nodes, as
# deploy/run-stack.sh gives them to `make run`'s: a new stream node (every job's log starts one)
# takes 512 bytes instead of Redis 7.0's 4,096.
REDIS_RECOMMENDED = ("--stream-node-max-bytes", "512")

# Sanitizer settings for every jobgate process (no effect on uninstrumented binaries).
SAN_ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:detect_leaks=1:print_stacktrace=1:abort_on_error=0:"
                    "detect_stack_use_after_return=0:strict_string_checks=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "LSAN_OPTIONS": "print_suppressions=0",
}
SAN_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                "SUMMARY: UndefinedBehaviorSanitizer", "LeakSanitizer has encountered",
                "AddressSanitizer:DEADLYSIGNAL")

# Environment variables of the caller that must not leak into the programs under test.
_SCRUB = re.compile(r"^(REDIS_URL|JOBGATE_.*|ASAN_OPTIONS|UBSAN_OPTIONS|LSAN_OPTIONS)$")


# ---- Assertions that print expected vs got -------------------------------------------------------

def eq(got, expected, what):
    """Asserts got == expected; the message names what was compared."""
    if got != expected:
        raise AssertionError("%s: expected %r, got %r" % (what, expected, got))


def check(cond, what, got=None):
    """Asserts cond; `what` says what was expected, `got` what was seen."""
    if not cond:
        raise AssertionError(what if got is None else "%s; got %r" % (what, got))


RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
JOB_FIELDS = ("id", "queue", "type", "status", "priority", "attempts", "max_attempts", "progress",
              "created_at", "started_at", "finished_at", "run_at", "worker", "result", "error",
              "cached", "cache_key", "cancel_requested", "version")


def expect_error(r, status, code, field=None):
    """Asserts that r is the contract's error answer: HTTP status, JSON
    {"error":{"code":code,"message":"..."}} (message naming field when given), JSON content
    type and X-Content-Type-Options: nosniff."""
    if r.status != status:
        raise AssertionError("%s: expected HTTP %d %s, got %r" % (r.what, status, code, r))
    ct = r.headers.get("Content-Type", "")
    check(ct.split(";")[0].strip() == "application/json",
          "%s: expected Content-Type application/json on the error" % r.what, ct)
    eq(r.headers.get("X-Content-Type-Options"), "nosniff", "%s: X-Content-Type-Options" % r.what)
    body = r.json()
    check(isinstance(body, dict) and list(body) == ["error"],
          "%s: expected a body of the form {\"error\":{...}}" % r.what, body)
    e = body["error"]
    check(isinstance(e, dict) and set(e) == {"code", "message"},
          "%s: expected error members code and message" % r.what, e)
    eq(e["code"], code, "%s: error code" % r.what)
    check(isinstance(e["message"], str) and e["message"],
          "%s: expected a non-empty error message" % r.what, e["message"])
    if field is not None:
        check(field in e["message"], "%s: expected the message to name the field %r"
              % (r.what, field), e["message"])
    return e


def is_apache_nul_refusal(stack, r, path):
    """True when r is Apache's own 404 (HTML) for a "%00" in the path: Apache refuses it before
    any per-location configuration applies, so neither a program nor apache/jobgate.conf answers
    it (README: what differs between the fronts)."""
    return stack.front == "apache" and r.status == 404 and "%00" in path.lower()


class HarnessError(Exception):
    """The stack could not be started or stopped cleanly (not a failure of the code's answer)."""


class SanitizerError(AssertionError):
    pass


# ---- Process bookkeeping -------------------------------------------------------------------------

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
except (OSError, AttributeError):  # pragma: no cover
    _prctl = None
_PR_SET_PDEATHSIG = 1


def _child_setup():
    # Runs in the child between fork and exec: die with the test runner even if it is killed.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_SIGTERM = signal.SIGTERM
_RUN_TOKEN = "%d-%d" % (os.getpid(), int(time.time()))


class Proc:
    """One started process: its own session/process group, output appended to log_path (a
    later process may append to the same file: log() is this one's part only)."""

    def __init__(self, name, argv, env, log_path, cwd=None, stdin=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.expected_exit = False   # set when a test stops or kills it on purpose
        with open(log_path, "ab") as log:
            self.log_start = log.tell()
            log.write(("# %s: %s\n" % (name, " ".join(argv))).encode())
            log.flush()
            self.p = subprocess.Popen(argv, env=env, cwd=cwd,
                                      stdin=subprocess.DEVNULL if stdin is None else stdin,
                                      stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True, preexec_fn=_child_setup)
        self.pid = self.p.pid
        _PROCS.add(self)

    def alive(self):
        return self.p.poll() is None

    @property
    def returncode(self):
        return self.p.poll()

    def signal(self, sig):
        """Sends sig; a terminating signal marks the exit as expected."""
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL, signal.SIGQUIT):
            self.expected_exit = True
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """Returns the exit code, or None if still running after timeout seconds."""
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_group(self):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.p.wait(5)
        _PROCS.discard(self)

    def stop(self, sig=_SIGTERM, timeout=10.0):
        """Signals the process, waits up to timeout, then kills its group. Returns
        (exit code, seconds taken, True if it had to be killed)."""
        self.expected_exit = True
        t0 = time.monotonic()
        killed = False
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            if self.wait(timeout) is None:
                killed = True
        rc = self.p.poll()
        self.kill_group()   # leftovers of its group, if any
        return (rc if not killed else None), time.monotonic() - t0, killed

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


_PROCS = set()
_STACKS = []


def _sweep_token(token):
    """Kills any process left whose environment carries token (job scripts in their own
    process groups, grandchildren)."""
    needle = ("JOBGATE_HARNESS_TOKEN=%s" % token).encode()
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(d), signal.SIGKILL)


_CLEANUPS = []


def at_cleanup(fn):
    """fn() runs at the end of kill_everything (atexit, SIGTERM/SIGINT), after every process
    is gone: for what a test made outside the processes (tests/netns.py's namespaces)."""
    _CLEANUPS.append(fn)


def kill_everything():
    """Last resort (atexit, signal): every process the harness started, at once."""
    for s in list(_STACKS):
        with contextlib.suppress(Exception):
            s.stop(check=False, quick=True)
    if _cluster is not None:
        with contextlib.suppress(Exception):
            _cluster.stop()
    for p in list(_PROCS):
        p.kill_group()
    with contextlib.suppress(Exception):
        _sweep_token(_RUN_TOKEN)
    while _CLEANUPS:
        with contextlib.suppress(Exception):
            _CLEANUPS.pop()()


# ---- Network namespaces (tests/netns.py makes them) ---------------------------------------------

_CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def in_netns(name):
    """Sockets made in the block (by this thread) belong to the network namespace `name`
    (as `ip netns` names it); None: no change. setns() is per thread, so other threads keep
    theirs; a socket keeps its namespace after the block."""
    if not name:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open("/run/netns/" + name, os.O_RDONLY)
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, "setns(%s): %s" % (name, os.strerror(e)))
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(own, _CLONE_NEWNET) != 0:   # pragma: no cover
                os._exit(99)     # a thread left in another namespace would test the wrong host
    finally:
        os.close(own)


def netns_argv(name, argv):
    """argv run inside network namespace name (`ip netns exec` execs it: same pid); None: argv."""
    return ["ip", "netns", "exec", name] + list(argv) if name else list(argv)


atexit.register(kill_everything)


def install_signal_handlers():
    """SIGTERM/SIGINT stop every stack, then exit 130/143 (run.py calls this)."""
    def handler(signum, frame):
        kill_everything()
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, handler)


_uniq = [0]


def unique_queue(stem="t"):
    """A queue name no other test uses (so a worker sees only this test's jobs)."""
    _uniq[0] += 1
    return "%s-%d-%s" % (stem, _uniq[0], os.urandom(3).hex())


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sigstop(pid, timeout=10.0):
    """Stops process pid (SIGSTOP) and returns once every one of its threads is stopped: kill()
    only queues the signal, and on a loaded machine a thread may run on for a while (tests that
    send requests "while the program is stopped" would race it)."""
    os.kill(pid, signal.SIGSTOP)

    def all_stopped():
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except FileNotFoundError:
            return True   # gone: nothing runs
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                continue
            if state not in ("T", "t"):
                return False
        return True
    wait_until(all_stopped, timeout, "process %d stopped" % pid, interval=0.005)


def while_stopped(pid, calls):
    """Starts every call (a function) in its own thread while process pid is stopped (sigstop),
    lets it go once they have had time to send, and returns their results in order: so that
    requests reach a program together. A call that raised or did not end in 60 s fails."""
    out = [None] * len(calls)

    def run(i):
        try:
            out[i] = calls[i]()
        except Exception as e:  # reported below, as the request's answer
            out[i] = e
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    sigstop(pid)
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
    finally:
        os.kill(pid, signal.SIGCONT)
    for t in threads:
        t.join(60)
    for i, r in enumerate(out):
        if isinstance(r, Exception) or r is None:
            raise AssertionError("request %d: expected an answer, got %r" % (i, r))
    return out


def wait_until(pred, timeout, what, interval=0.02):
    """Polls pred() until it returns a true value (returned) or timeout seconds pass
    (AssertionError naming what was awaited)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
        except (OSError, RedisError, http.client.HTTPException) as e:
            last = e
            v = None
        else:
            v = last
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s (last: %r)"
                                 % (timeout, what, last))
        time.sleep(interval)


class Bg(threading.Thread):
    """fn() in a thread; result() re-raises its exception; ended: time.monotonic() at its end."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.value, self.error, self.ended = fn, None, None, None
        self.start()

    def run(self):
        try:
            self.value = self.fn()
        except BaseException as e:   # noqa: B902 - handed to the test's thread
            self.error = e
        self.ended = time.monotonic()

    def result(self, timeout=60):
        self.join(timeout)
        if self.is_alive():
            raise AssertionError("still running after %s s" % timeout)
        if self.error:
            raise self.error
        return self.value


# ---- A tiny Redis client (RESP2) -----------------------------------------------------------------

class RedisError(Exception):
    pass


class Redis:
    """Blocking RESP2 client over a unix socket or TCP. call(*args) returns str/int/list/None
    (bulk strings decoded as UTF-8 with replacement unless raw=True); error replies raise
    RedisError."""

    def __init__(self, unix=None, host="127.0.0.1", port=None, password=None, db=0, timeout=10,
                 netns=None):
        self.unix, self.host, self.port = unix, host, port
        self.netns = netns     # TCP connections made inside this network namespace
        self.password, self.db, self.timeout = password, db, timeout
        self.sock = None
        self.buf = b""

    def _connect(self):
        if self.unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            s.connect(self.unix)
        else:
            with in_netns(self.netns):
                s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock, self.buf = s, b""
        if self.password:
            self._send([("AUTH", self.password)])
            self._read(False)
        if self.db:
            self._send([("SELECT", self.db)])
            self._read(False)

    def close(self):
        if self.sock:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None

    @staticmethod
    def _encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, bytes):
                b = a
            else:
                b = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _send(self, cmds):
        self.sock.sendall(b"".join(self._encode(c) for c in cmds))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _read(self, raw):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n)
            return data if raw else data.decode("utf-8", "replace")
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read(raw) for _ in range(n)]
        raise RedisError("bad RESP reply %r" % line)

    def pipeline(self, cmds, raw=False):
        """Runs commands in one round trip; returns their replies (RedisError instances for
        error replies, not raised)."""
        for attempt in (1, 2):
            try:
                if self.sock is None:
                    self._connect()
                self._send(cmds)
                return [self._read(raw) for _ in cmds]
            except (OSError, ConnectionError):
                self.close()
                if attempt == 2:
                    raise

    def call(self, *args, raw=False):
        r = self.pipeline([args], raw=raw)[0]
        if isinstance(r, RedisError):
            raise r
        return r


# ---- HTTP answers ----------------------------------------------------------------------------

class Response:
    """An HTTP (or CGI/FastCGI) answer: status, reason, headers (case-insensitive, an
    email.message.Message), body (bytes)."""

    def __init__(self, status, headers, body, reason="", what=""):
        self.status = status
        self.headers = headers
        self.body = body
        self.reason = reason
        self.what = what

    def json(self):
        try:
            return jsonlib.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise AssertionError("%s: expected a JSON body, got %r (%s)"
                                 % (self.what, self.body[:300], e))

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        hdrs = "; ".join("%s: %s" % (k, v) for k, v in self.headers.items())
        return "<%s -> %d [%s] %r>" % (self.what, self.status, hdrs, self.body[:400])


def _headers_from_text(text):
    return email.parser.Parser().parsestr(text, headersonly=True)


def parse_http_response(raw, what="raw"):
    """Parses a raw HTTP/1.x response (headers + body as received, no chunked decoding)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError("%s: no complete HTTP header in %r" % (what, raw[:300]))
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/\d\.\d (\d{3}) ?(.*)", lines[0])
    if not m:
        raise AssertionError("%s: bad status line %r" % (what, lines[0]))
    return Response(int(m.group(1)), _headers_from_text("\r\n".join(lines[1:]) + "\r\n\r\n"),
                    body, m.group(2), what)


def parse_cgi_response(out, what="cgi"):
    """Parses a CGI/FastCGI response: header lines (Status: ...), blank line, body."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = out.partition(sep)
        if found:
            break
    else:
        raise AssertionError("%s: no header/body separator in %r" % (what, out[:300]))
    headers = _headers_from_text(head.decode("latin-1").replace("\r\n", "\n") + "\n\n")
    status, reason = 200, ""
    st = headers.get("Status")
    if st:
        m = re.match(r"\s*(\d{3})\s*(.*)", st)
        if not m:
            raise AssertionError("%s: bad Status header %r" % (what, st))
        status, reason = int(m.group(1)), m.group(2)
    return Response(status, headers, body, reason, what)


# ---- A FastCGI client (to talk to a program without nginx) ---------------------------------------

FCGI_BEGIN, FCGI_END, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT, FCGI_STDERR = 1, 3, 4, 5, 6, 7


def _fcgi_record(rtype, content, req_id=1):
    pad = (8 - len(content) % 8) % 8
    return struct.pack("!BBHHBB", 1, rtype, req_id, len(content), pad, 0) + content + b"\0" * pad


def _fcgi_len(n):
    return struct.pack("!B", n) if n < 128 else struct.pack("!I", n | 0x80000000)


def fcgi_params(method, uri, body=b"", headers=None, extra=None):
    """The CGI parameters nginx's jobgate.conf would send for this request."""
    p = {
        "REQUEST_METHOD": method, "REQUEST_URI": uri, "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)) if body else "", "CONTENT_TYPE": "",
    }
    for k, v in (headers or {}).items():
        if k.lower() == "content-type":
            p["CONTENT_TYPE"] = v
        else:
            p["HTTP_" + k.upper().replace("-", "_")] = v
    p.update(extra or {})
    return p


def fcgi_request_bytes(params, body=b"", keep_conn=False):
    """The records of one FastCGI RESPONDER request (request id 1), as a web server sends them;
    keep_conn sets FCGI_KEEP_CONN."""
    out = [_fcgi_record(FCGI_BEGIN, struct.pack("!HB5x", 1, 1 if keep_conn else 0))]
    pairs = b"".join(_fcgi_len(len(k.encode())) + _fcgi_len(len(str(v).encode()))
                     + k.encode() + str(v).encode() for k, v in params.items())
    for i in range(0, len(pairs), 65535):
        out.append(_fcgi_record(FCGI_PARAMS, pairs[i:i + 65535]))
    out.append(_fcgi_record(FCGI_PARAMS, b""))
    for i in range(0, len(body), 65535):
        out.append(_fcgi_record(FCGI_STDIN, body[i:i + 65535]))
    out.append(_fcgi_record(FCGI_STDIN, b""))
    return b"".join(out)


def fcgi_read_response(s, what="fastcgi"):
    """Reads one answer's records from socket s up to FCGI_END_REQUEST; returns the parsed
    Response (the connection stays open)."""
    stdout, buf = [], b""
    while True:
        while len(buf) >= 8:
            _, rtype, _, clen, plen, _ = struct.unpack("!BBHHBB", buf[:8])
            if len(buf) < 8 + clen + plen:
                break
            content = buf[8:8 + clen]
            buf = buf[8 + clen + plen:]
            if rtype == FCGI_STDOUT:
                stdout.append(content)
            elif rtype == FCGI_END:
                return parse_cgi_response(b"".join(stdout), what)
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("%s: connection closed before FCGI_END_REQUEST (got %r)"
                                 % (what, b"".join(stdout)[:300]))
        buf += chunk


def read_until_closed(s):
    """Everything socket s receives until the peer closes it (or until its timeout)."""
    chunks = []
    with contextlib.suppress(socket.timeout):
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    return b"".join(chunks)


def accepts(path):
    """True once a unix socket accepts connections. Its file alone is not enough: spawn-fcgi
    binds (the file appears) before it listens, and a connect in between is refused."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def fcgi_connect(address, timeout=30):
    """A connection to a FastCGI socket: a unix socket path, or (host, port)."""
    if isinstance(address, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(address)
        return s
    return socket.create_connection(address, timeout=timeout)


def fcgi_request(address, params, body=b"", timeout=30, what="fastcgi"):
    """One FastCGI RESPONDER request to address (unix socket path, or (host, port)); returns the
    parsed Response. params is a dict of CGI parameters (see fcgi_params)."""
    with fcgi_connect(address, timeout) as s:
        s.sendall(fcgi_request_bytes(params, body))
        return fcgi_read_response(s, what)


# ---- The stack -------------------------------------------------------------------------------

def binary(name):
    return os.path.join(BUILD, "jobgate-" + name)


def _base_env():
    env = {k: v for k, v in os.environ.items() if not _SCRUB.match(k)}
    env.update(SAN_ENV)
    env["JOBGATE_HARNESS_TOKEN"] = _RUN_TOKEN
    return env


class Worker:
    """A jobgate-worker process started by Stack.start_worker()."""

    def __init__(self, proc, grace):
        self.proc = proc
        self.pid = proc.pid
        self.grace = grace

    def signal(self, sig):
        self.proc.signal(sig)

    def alive(self):
        return self.proc.alive()

    def wait(self, timeout):
        return self.proc.wait(timeout)

    def stop(self, timeout=None):
        """SIGTERM, wait (its grace + 5 s unless given), then kill. Returns the exit code."""
        rc, _, _ = self.proc.stop(signal.SIGTERM, timeout or self.grace + 5)
        return rc

    def log(self):
        return self.proc.log()


class Stack:
    """redis-server + the web programs under spawn-fcgi + nginx, all in a private temp dir.

    env: extra environment for the programs (JOBGATE_*; REDIS_URL to override the default unix
    socket URL). programs: which web programs to start. redis_password: start Redis with
    requirepass and give the programs a redis://:password@... URL. redis_via: "unix" (default)
    or "tcp" for the programs' REDIS_URL. program_args: extra flags for every program.
    instances: program name -> how many processes of it to start (default 1), all listed as
    `server` lines of its nginx upstream, or members of its Apache balancer (sockets
    sock(name, 0), sock(name, 1), ...).
    netns: run every process of the stack (programs, front, workers) in that network namespace
    (tests/netns.py), and make the test's own connections to the front there too. cluster: a
    tests/cluster.py Cluster the stack runs on, owned (stopped) by the caller, not by the stack.
    redis_kind: "single" (a redis-server of the stack's own) or "cluster" (the process's shared
    cluster, shared_cluster()); default REDIS_KIND.
    """

    redis_args = ()   # more redis-server flags, for a subclass (tests/test_cluster_keys.py)

    def __init__(self, env=None, programs=DEFAULT_PROGRAMS, threads=4, name="stack",
                 redis_password=None, redis_via="unix", program_args=(), grace=2,
                 nginx_extra="", nginx_http_extra="", redis_db=0, nginx_workers=1,
                 nginx_worker_connections=4096, start=True, instances=None, front=None,
                 apache_workers=256, apache_extra="", www=(), api_at=(), netns=None,
                 cluster=None, redis_kind=None):
        self.name = name
        self.redis_kind = "cluster" if cluster else (redis_kind or REDIS_KIND)
        if self.redis_kind not in REDIS_KINDS:
            raise HarnessError("unknown Redis kind %r (one of %s)"
                               % (self.redis_kind, ", ".join(REDIS_KINDS)))
        if self.redis_kind == "cluster" and (redis_password or redis_db):
            # a cluster has db 0 only, and the test cluster no password: a test that needs
            # either is a single-Redis test (@single_redis_only), not one that passes unseen
            raise HarnessError("a stack on the cluster has no redis_password or redis_db "
                               "(mark the test @harness.single_redis_only)")
        self.netns = netns
        self.given_cluster = cluster
        self.instances = dict(instances or {})
        self.env = dict(env or {})
        self.programs = tuple(programs)
        self.threads = threads
        self.grace = grace
        self.program_args = tuple(program_args)
        self.redis_password = redis_password
        self.redis_via = redis_via
        self.redis_db = redis_db
        self.nginx_extra = nginx_extra
        self.nginx_http_extra = nginx_http_extra
        self.nginx_workers = nginx_workers
        self.nginx_worker_connections = nginx_worker_connections
        self.front = front or FRONT           # "nginx" or "apache"
        if self.front not in FRONTS:
            raise HarnessError("unknown front %r (one of %s)" % (self.front, ", ".join(FRONTS)))
        self.apache_workers = apache_workers
        self.apache_extra = apache_extra     # more for the <VirtualHost>; @DIR@: the stack's dir
        # Front-neutral static pages: www is (URL prefix, directory) pairs served by either front
        # (index.html for a directory); api_at is URL prefixes ("/ops/api/") proxied to the
        # front's own /api/ with the prefix replaced, as a site mounting the API elsewhere does.
        self.www = tuple(www)
        self.api_at = tuple(api_at)
        for prefix in [p for p, _ in self.www] + list(self.api_at):
            if not prefix.startswith("/") or not prefix.endswith("/"):
                raise HarnessError("www/api_at prefix %r must start and end with /" % prefix)
        self.dir = tempfile.mkdtemp(prefix="jg-%s-" % re.sub(r"[^a-z0-9]", "", name.lower())[:12])
        os.chmod(self.dir, 0o755)
        self.redis_port = free_port()
        self.redis_sock = os.path.join(self.dir, "redis.sock")
        self.port = None
        self.procs = {}          # program name -> [Proc]
        self.workers = []
        self.redis_proc = None
        self.nginx_proc = None     # the front end's process (nginx or apache2)
        self.stopped = False
        self.broken = False      # a process died unexpectedly: the shared stack is replaced
        self.problems = []       # unexpected deaths, found while checking
        self._redis = None
        self.cluster = None      # a tests/cluster.py Cluster when redis_kind is "cluster"
        _STACKS.append(self)
        _touched.add(self)
        if start:
            try:
                self.start()
            except BaseException:
                self.stop(check=False)
                raise

    # -- context manager
    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.stop(check=et is None)
        return False

    # -- configuration
    @property
    def redis_url(self):
        if self.cluster:
            return self.cluster.url
        if self.redis_via == "tcp" or self.redis_password:
            auth = ":%s@" % self.redis_password if self.redis_password else ""
            return "redis://%s127.0.0.1:%d/%d" % (auth, self.redis_port, self.redis_db)
        return "unix://%s?db=%d" % (self.redis_sock, self.redis_db)

    @property
    def redis_address(self):
        """Where the programs find Redis, as --check shows it: the unix socket's path, or the
        cluster's first seed (host:port)."""
        return self.cluster.nodes[0].addr if self.cluster else self.redis_sock

    @property
    def base(self):
        return "http://127.0.0.1:%d%s" % (self.port, PREFIX)

    def program_env(self, extra=None):
        env = _base_env()
        env["REDIS_URL"] = self.redis_url
        env.update(self.env)
        env.update(extra or {})
        return env

    # -- starting
    def start(self):
        for p in self.programs:
            if not os.access(binary(p), os.X_OK):
                raise HarnessError("%s is not built (run make)" % binary(p))
        # free_port() races with every other process on the machine (other test runs): a port
        # taken between the probe and the bind gets a new one, a few times
        for attempt in range(4):
            if self.redis_kind == "cluster":
                import cluster as clustermod
                self.cluster = self.given_cluster or shared_cluster()
                self._redis = clustermod.ClusterClient(self.cluster)
                if self.cluster is _cluster and not any(
                        x is not self and x.cluster is self.cluster and not x.stopped
                        for x in _touched):
                    _stop_idle_shared(self)
                    flush_cluster()      # a fresh Redis, as a stack of its own would get
                break
            try:
                self.start_redis()
                break
            except AssertionError:
                if attempt == 3 or self.redis_proc.alive():
                    raise
                self.redis_port = free_port()
        for p in self.programs:
            for n in range(self.instances.get(p, 1)):
                self.start_program(p, n=n)
        for attempt in range(4):
            self.start_front()
            try:
                wait_until(self._nginx_ready, 10, "%s answering" % self.front)
                break
            except HarnessError:
                err = _tail(self.front_error_log)
                if attempt == 3 or "Address already in use" not in err:
                    raise
                self.nginx_proc.stop(signal.SIGKILL, 5)
                with open(self.front_error_log, "a") as f:
                    f.write("# harness: port %d was taken, retrying on another\n" % self.port)
        for p in self.programs:
            for n in range(self.instances.get(p, 1)):
                wait_until(lambda p=p, n=n: accepts(self.sock(p, n)), 10, "socket of " + p)
        time.sleep(0.05)
        self.check_alive(raise_=True)

    def sock(self, program, n=0):
        return os.path.join(self.dir, "%s.sock" % program if n == 0 else "%s-%d.sock" % (program, n))

    def start_redis(self):
        args = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                "--unixsocket", self.redis_sock, "--unixsocketperm", "777",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--daemonize", "no", "--protected-mode", "no", "--maxclients", "20000",
                "--logfile", ""] + list(REDIS_RECOMMENDED)
        if self.redis_password:
            args += ["--requirepass", self.redis_password]
        args += list(self.redis_args)
        env = {k: v for k, v in os.environ.items() if not _SCRUB.match(k)}
        env["JOBGATE_HARNESS_TOKEN"] = _RUN_TOKEN
        self.redis_proc = Proc("redis", args, env, os.path.join(self.dir, "redis.log"))
        self._redis = None

        def ping():
            if not self.redis_proc.alive():
                raise AssertionError("redis-server exited: " + _tail(self.redis_proc.log_path, 600))
            return self.redis("PING") == "PONG"
        wait_until(ping, 10, "redis PING")

    def stop_redis(self):
        """Stops Redis (the programs keep running). Its data is gone (no persistence)."""
        if self.cluster:
            raise HarnessError("stop_redis: not on a cluster (mark the test "
                               "@harness.single_redis_only)")
        if self.redis_proc:
            self.redis_proc.stop(signal.SIGKILL, 5)
        if self._redis:
            self._redis.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.redis_sock)

    def restart_redis(self, down_for=0.0):
        """Stops Redis and starts it again on the same port and socket."""
        self.stop_redis()
        if down_for:
            time.sleep(down_for)
        self.start_redis()

    def start_program(self, name, n=0, args=(), env=None, threads=None):
        """Starts one instance of a web program under spawn-fcgi on sock(name, n)."""
        sock = self.sock(name, n)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)
        argv = ["spawn-fcgi", "-n", "-s", sock, "-M", "0666", "--", binary(name),
                "--grace", str(self.grace)]
        if threads or self.threads:   # threads=0 for the stack: each program's own default
            argv += ["--threads", str(threads or self.threads)]
        argv += list(self.program_args) + list(args)
        log = os.path.join(self.dir, "%s.log" % name if n == 0 else "%s-%d.log" % (name, n))
        proc = Proc(name, netns_argv(self.netns, argv), self.program_env(env), log)
        self.procs.setdefault(name, []).append(proc)
        return proc

    @property
    def front_error_log(self):
        return os.path.join(self.dir, "%s-error.log" % self.front)

    def start_front(self):
        """Starts the stack's front end (nginx or apache2) on a new free port."""
        if self.front == "apache":
            self.start_apache()
        else:
            self.start_nginx()

    def start_apache(self):
        self.port = free_port()
        conf = os.path.join(self.dir, "apache2.conf")
        with open(conf, "w") as f:
            f.write(apache_front.apache_conf(self.dir, self.port, self.dir, self.apache_workers,
                                             self.apache_extra.replace("@DIR@", self.dir),
                                             self.instances, self.www, self.api_at, WWW_TYPES))
        self.nginx_proc = Proc("apache", netns_argv(self.netns, apache_front.apache_argv(conf)),
                               _base_env(),
                               os.path.join(self.dir, "apache.log"))

    def start_nginx(self):
        self.port = free_port()
        for d in ("body", "fastcgi", "proxy", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.dir, "nginx-tmp", d), exist_ok=True)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(self.dir, self.port, self.dir,
                               self.nginx_extra.replace("@DIR@", self.dir)
                               + nginx_www(self.port, self.www, self.api_at),
                               self.nginx_http_extra.replace("@DIR@", self.dir),
                               self.nginx_worker_connections, self.nginx_workers, self.instances))
        self.nginx_proc = Proc("nginx", netns_argv(self.netns, [
                                   "nginx", "-p", self.dir + "/", "-c", conf,
                                   "-e", os.path.join(self.dir, "nginx-error.log")]),
                               _base_env(), os.path.join(self.dir, "nginx.log"))

    def _nginx_ready(self):
        if not self.nginx_proc.alive():
            raise HarnessError("%s exited:\n" % self.front + self.nginx_proc.log()
                               + _tail(self.front_error_log))
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            with in_netns(self.netns):
                c.connect()
            c.request("GET", "/__jobgate_ready")
            return c.getresponse().status == 204
        finally:
            c.close()

    def start_worker(self, queues=("default",), types=None, concurrency=1, env=None, args=(),
                     grace=None):
        """Starts a jobgate-worker for queues and types (None: every demo type; a list of demo
        type names; or a dict NAME -> COMMAND)."""
        _touched.add(self)
        if types is None:
            types = DEMO_TYPES
        if not isinstance(types, dict):
            types = {t: os.path.join(JOBS_DIR, t + ".sh") for t in types}
        if not os.access(binary("worker"), os.X_OK):
            raise HarnessError("%s is not built (run make)" % binary("worker"))
        argv = [binary("worker")]
        for q in queues:
            argv += ["--queue", q]
        for t, cmd in types.items():
            argv += ["--type", "%s=%s" % (t, cmd)]
        argv += ["--concurrency", str(concurrency)]
        if grace is not None:
            argv += ["--grace", str(grace)]
        argv += list(args)
        n = len(self.workers)
        proc = Proc("worker", netns_argv(self.netns, argv), self.program_env(env),
                    os.path.join(self.dir, "worker-%d.log" % n))
        w = Worker(proc, grace if grace is not None else 30)
        self.workers.append(w)
        return w

    def stop_workers(self):
        for w in self.workers:
            if w.alive():
                w.stop(timeout=w.grace + 5)
        self.workers = []

    # -- looking at it
    def program_pids(self, name):
        return [p.pid for p in self.procs.get(name, []) if p.alive()]

    def program_procs(self, name):
        return list(self.procs.get(name, []))

    def program_log(self, name):
        return "".join(p.log() for p in self.procs.get(name, []))

    def all_logs(self):
        out = []
        for p in self._all_procs():
            out.append(p.log())
        for f in (self.front_error_log, os.path.join(self.dir, "%s-access.log" % self.front)):
            out.append(_tail(f, 1 << 20))
        return "\n".join(out)

    def _all_procs(self):
        ps = [p for lst in self.procs.values() for p in lst] + [w.proc for w in self.workers]
        return ps

    def check_alive(self, raise_=False):
        """Returns (and records) a description of every process of the stack that died without
        being asked to."""
        dead = []
        for p in self._all_procs() + [x for x in (self.redis_proc, self.nginx_proc) if x]:
            if not p.expected_exit and not p.alive():
                p.expected_exit = True   # report once
                dead.append("%s (pid %d) died with exit code %s; log tail:\n%s"
                            % (p.name, p.pid, p.returncode, _tail(p.log_path)))
        self.problems += dead
        if dead:
            self.broken = True
        if dead and raise_:
            raise HarnessError("stack %s: %s" % (self.name, "\n".join(dead)))
        return dead

    # -- Redis
    def redis(self, *args, raw=False):
        """Runs one command on the stack's Redis; returns the reply (errors raise RedisError)."""
        _touched.add(self)
        if self._redis is None:
            self._redis = Redis(unix=self.redis_sock, password=self.redis_password, db=self.redis_db)
        return self._redis.call(*args, raw=raw)

    def redis_pipeline(self, cmds, raw=False):
        _touched.add(self)
        if self._redis is None:
            self._redis = Redis(unix=self.redis_sock, password=self.redis_password, db=self.redis_db)
        return self._redis.pipeline(cmds, raw=raw)

    def snapshot(self):
        """Every key with its content (DUMP): equal snapshots mean nothing in Redis changed."""
        keys = sorted(self.redis("KEYS", "*"))
        if not keys:
            return {}
        # a hash by its sorted fields: DUMP of a hash in Redis' hashtable encoding (a job hash,
        # whose `json` field is longer than hash-max-listpack-value) follows the order of its
        # dict, which a read may change (incremental rehashing) without changing any field
        types = self.redis_pipeline([("TYPE", k) for k in keys])
        dumps = self.redis_pipeline([("HGETALL", k) if t == "hash" else ("DUMP", k)
                                     for k, t in zip(keys, types)], raw=True)
        dumps = [sorted(zip(d[::2], d[1::2])) if t == "hash" and d else d
                 for d, t in zip(dumps, types)]
        return {k: d for k, d in zip(keys, dumps) if d}   # None, []: expired meanwhile

    def _ttls(self, keys):
        """PTTL of each key (ms; -1 without a TTL, -2 gone)."""
        keys = sorted(keys)
        return dict(zip(keys, self.redis_pipeline([("PTTL", k) for k in keys]))) if keys else {}

    # a live worker's heartbeat (P:worker:<id> and the registry P:workers, every 5 s) is no
    # change a request made: unchanged() leaves them out
    HEARTBEAT_KEY = re.compile(r"^[^{}]*:(workers|worker:[^:]+)$")

    @contextlib.contextmanager
    def unchanged(self, what="the request"):
        """Asserts that the block changed no key in Redis but workers' heartbeats. A key that
        vanished because its TTL, read before the block, ran out during it (another test's
        short-lived cache entry, say) is not a change."""
        before = self.snapshot()
        ttls = self._ttls(before)
        started = time.monotonic()
        yield
        after = self.snapshot()
        if before != after:
            elapsed_ms = (time.monotonic() - started) * 1000 + 500
            # -2: already gone when its TTL was read, just after the snapshot
            expired = {k for k in set(before) - set(after)
                       if ttls.get(k, -1) == -2 or 0 <= ttls.get(k, -1) <= elapsed_ms}
            beats = {k for k in set(before) | set(after) if self.HEARTBEAT_KEY.search(k)}
            added = sorted(set(after) - set(before) - beats)
            removed = sorted(set(before) - set(after) - expired - beats)
            changed = sorted(k for k in set(before) & set(after) - beats if before[k] != after[k])
            if not (added or removed or changed):
                return
            raise AssertionError("%s changed Redis: expected no change, got added=%r removed=%r "
                                 "changed=%r" % (what, added[:10], removed[:10], changed[:10]))

    @contextlib.contextmanager
    def monitor(self):
        """Collects every command Redis runs during the block (MONITOR; on a cluster, on every
        master): yields a list that holds the commands' text lines once the block ends."""
        lines = []
        socks = []
        if self.cluster:
            targets = [(n, ("127.0.0.1", n.port)) for n in self.cluster.masters()]
        else:
            targets = [(None, self.redis_sock)]
        try:
            for node, addr in targets:
                s = socket.socket(socket.AF_INET if node else socket.AF_UNIX, socket.SOCK_STREAM)
                socks.append((node, s))
                s.settimeout(5)
                s.connect(addr)
                if self.redis_password:
                    s.sendall(Redis._encode(("AUTH", self.redis_password)))
                s.sendall(Redis._encode(("MONITOR",)))
                buf = b""
                want = 2 if self.redis_password else 1
                while buf.count(b"\r\n") < want:
                    buf += s.recv(4096)
            # a marker command, so that we know when everything before the block's end was seen
            yield lines
            marker = "jobgate-monitor-end-%d" % time.monotonic_ns()
            for node, s in socks:
                if node:
                    node.call("ECHO", marker)
                else:
                    self.redis("ECHO", marker)
                data = b""
                deadline = time.monotonic() + 5
                while marker.encode() not in data and time.monotonic() < deadline:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                for ln in data.decode("utf-8", "replace").split("\r\n"):
                    if ln.startswith("+") and marker not in ln and '"ECHO"' not in ln[:80]:
                        lines.append(ln[1:])
        finally:
            for _, s in socks:
                s.close()

    # -- HTTP
    def request(self, method, path, body=None, headers=None, json=None, timeout=30,
                prefix=True):
        """One HTTP/1.1 request through the front end; path is under the mount prefix ("/jobs/...")
        unless prefix=False. json= sends a JSON body with Content-Type: application/json."""
        _touched.add(self)
        url = (PREFIX + path) if prefix else path
        h = dict(headers or {})
        if json is not None:
            body = jsonlib.dumps(json).encode()
            if not any(k.lower() == "content-type" for k in h):
                h["Content-Type"] = "application/json"
        if isinstance(body, str):
            body = body.encode()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            with in_netns(self.netns):
                c.connect()
            c.request(method, url, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return Response(r.status, r.msg, data, r.reason, "%s %s" % (method, url))
        finally:
            c.close()

    def raw_request(self, data, timeout=10):
        """Sends exactly these bytes to the front end and returns everything it answers until it closes
        (send Connection: close). Parse with parse_http_response()."""
        with in_netns(self.netns):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        with s:
            s.sendall(data)
            return read_until_closed(s)

    def fcgi(self, program, method, uri, body=b"", headers=None, n=0, timeout=30, extra=None):
        """One request straight to a program's FastCGI socket, without nginx."""
        if isinstance(body, str):
            body = body.encode()
        return fcgi_request(self.sock(program, n), fcgi_params(method, uri, body, headers, extra),
                            body, timeout, "fcgi %s %s %s" % (program, method, uri))

    # -- jobs
    def submit(self, body=None, **fields):
        """POST /jobs with body (or the keyword fields); asserts 202 and returns the job."""
        if body is None:
            body = dict(fields)
            body.setdefault("type", "echo")
        r = self.request("POST", "/jobs", json=body)
        if r.status != 202:
            raise AssertionError("submit %r: expected 202, got %r" % (body, r))
        return r.json()

    def job(self, job_id):
        r = self.request("GET", "/jobs/" + job_id)
        if r.status != 200:
            raise AssertionError("GET job %s: expected 200, got %r" % (job_id, r))
        return r.json()

    def wait_status(self, job_id, statuses, timeout=20):
        """Polls GET /jobs/{id} until its status is one of statuses; returns the job. A 503
        (Redis briefly unreachable) is polled through; any other non-200 answer fails."""
        if isinstance(statuses, str):
            statuses = (statuses,)
        seen = []

        def pred():
            r = self.request("GET", "/jobs/" + job_id)
            if r.status == 503:
                seen.append("(503)")
                return None
            if r.status != 200:
                raise AssertionError("GET job %s: expected 200, got %r" % (job_id, r))
            j = r.json()
            seen.append(j["status"])
            return j if j["status"] in statuses else None
        try:
            return wait_until(pred, timeout, "job %s to be %s" % (job_id, "/".join(statuses)), 0.05)
        except AssertionError as e:
            raise AssertionError("%s; statuses seen: %s" % (e, sorted(set(seen))))

    # -- stopping
    def stop(self, check=True, quick=False):
        """Stops workers, nginx, programs, Redis; scans logs for sanitizer reports; removes the
        temp dir (kept when something was found). With check, raises SanitizerError /
        HarnessError on reports, unexpected deaths or programs that did not stop in time."""
        if self.stopped:
            return []
        self.stopped = True
        problems = list(self.problems)
        if not quick:
            problems += self.check_alive()
        wait = 1 if quick else None
        for w in self.workers:
            rc, _, killed = w.proc.stop(signal.SIGTERM, wait or w.grace + 5)
            if killed and not quick:
                problems.append("worker pid %d did not stop within %s s of SIGTERM"
                                % (w.pid, w.grace + 5))
        if self.nginx_proc:
            # Apache's children wait for requests still proxied (open log streams) before they
            # exit on SIGTERM; a test stack does not wait long for that
            self.nginx_proc.stop(signal.SIGTERM, wait or (1 if self.front == "apache" else 5))
        for name, lst in self.procs.items():
            for p in lst:
                if p.expected_exit and not p.alive():
                    continue
                rc, took, killed = p.stop(signal.SIGTERM, wait or self.grace + 5)
                if quick:
                    continue
                if killed:
                    problems.append("%s pid %d did not exit within %s s of SIGTERM (grace %s)"
                                    % (name, p.pid, self.grace + 5, self.grace))
                elif rc not in (0, None):
                    problems.append("%s pid %d exited with %s after SIGTERM; log tail:\n%s"
                                    % (name, p.pid, rc, _tail(p.log_path)))
        if self.redis_proc:
            self.redis_proc.stop(signal.SIGTERM, wait or 5)
        if self._redis:
            self._redis.close()
        san = scan_sanitizer_reports(self._all_procs())
        problems += san
        if not _other_live_stacks(self):   # job scripts left in their own process groups
            with contextlib.suppress(Exception):
                _sweep_token(_RUN_TOKEN)
        if self in _STACKS:
            _STACKS.remove(self)
        if problems or os.environ.get("JOBGATE_KEEP_TMP"):
            sys.stderr.write("# stack %s: logs kept in %s\n" % (self.name, self.dir))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if check and problems:
            cls = SanitizerError if san else HarnessError
            raise cls("stack %s: %s" % (self.name, "\n".join(problems)))
        return problems


def _other_live_stacks(me):
    return any(s is not me and not s.stopped for s in _STACKS)


def _tail(path, n=3000):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def scan_sanitizer_reports(procs):
    """Returns one description per log that holds a sanitizer report."""
    found = []
    for p in procs:
        text = p.log()
        hits = [pat for pat in SAN_PATTERNS if pat in text]
        if hits:
            i = min(text.find(h) for h in hits)
            found.append("sanitizer report in %s log (%s):\n%s"
                         % (p.name, p.log_path, text[max(0, i - 200):i + 4000]))
    return found


def upstreams_conf(sockets_dir, instances=None):
    """The shipped nginx/jobgate-upstreams.conf with its one setting, the socket directory,
    changed to sockets_dir, as its comments tell a user to do; with instances (program ->
    count), a `server` line per further process of a program, as its comments also say."""
    with open(NGINX_UPSTREAMS) as f:
        text = f.read()
    if text.count(SHIPPED_SOCKET_DIR) != 5:
        raise HarnessError("%s no longer names %s on its five server lines"
                           % (NGINX_UPSTREAMS, SHIPPED_SOCKET_DIR))
    for prog, count in (instances or {}).items():
        line = "    server unix:%s%s.sock;\n" % (SHIPPED_SOCKET_DIR, prog)
        if line not in text:
            raise HarnessError("%s has no line %r" % (NGINX_UPSTREAMS, line))
        more = "".join("    server unix:%s%s-%d.sock;\n" % (SHIPPED_SOCKET_DIR, prog, n)
                       for n in range(1, count))
        text = text.replace(line, line + more)
    return text.replace(SHIPPED_SOCKET_DIR, sockets_dir.rstrip("/") + "/")


# The page types the static mounts (Stack's www) are served with, by either front.
WWW_TYPES = (("text/html", "html"), ("text/css", "css"), ("text/javascript", "js"),
             ("image/png", "png"), ("image/svg+xml", "svg"))


def nginx_www(port, www=(), api_at=()):
    """nginx locations for Stack's www mounts and api_at prefixes (the proxy goes back to this
    same server's /api/); apache_front.www_conf() is Apache's."""
    types = "types { %s }" % " ".join("%s %s;" % t for t in WWW_TYPES)
    out = []
    for prefix, directory in www:
        out.append("location %s { alias %s/; index index.html; %s }" % (prefix, directory.rstrip("/"), types))
    for prefix in api_at:
        out.append("location %s { proxy_pass http://127.0.0.1:%d/api/; proxy_buffering off; "
                   "proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_read_timeout 75s; }"
                   % (prefix, port))
    return "\n        " + "\n        ".join(out) if out else ""


def nginx_conf(run_dir, port, sockets_dir, server_extra="", http_extra="", worker_connections=4096,
               workers=1, instances=None):
    """A top-level nginx.conf that serves 127.0.0.1:port, includes the shipped
    nginx/jobgate.conf unchanged and the shipped upstreams with their socket directory set
    (written to run_dir). Used by the tests and the bench; deploy/run-stack.sh writes its own."""
    with open(os.path.join(run_dir, "jobgate-upstreams.conf"), "w") as f:
        f.write(upstreams_conf(sockets_dir, instances))
    user = "user root;\n" if os.geteuid() == 0 else ""
    return """# generated by tests/harness.py
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
{user}
events {{ worker_connections {wc}; }}

http {{
    client_body_temp_path {d}/nginx-tmp/body;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    proxy_temp_path {d}/nginx-tmp/proxy;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    default_type application/octet-stream;
    include {d}/jobgate-upstreams.conf;
    access_log {d}/nginx-access.log jobgate;   # the shipped format: no ?access_token=
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        include {conf};
        location = /__jobgate_ready {{ return 204; }}
        {extra}
    }}
}}
""".format(d=run_dir, port=port, conf=NGINX_CONF, user=user, extra=server_extra,
           http_extra=http_extra, wc=worker_connections, workers=workers,
           nofile=max(16384, 2 * worker_connections + 100))


# ---- The shared default stack ------------------------------------------------------------------

_shared = None


def stack():
    """The shared default stack (submit + status, unix-socket Redis, 4 threads), started on
    first use and stopped by run.py at the end. A test that breaks a stack makes its own."""
    global _shared
    if _shared is not None and (_shared.front != FRONT or _shared.redis_kind != REDIS_KIND) \
            and not _shared.stopped:
        _shared.stop(check=False)    # run.py switched passes: the next pass gets its own
        _shared = None
    if _shared is not None and (_shared.stopped or _shared.broken or _shared.check_alive()):
        # a program died: the test that was running is failed by run.py (after_test), and the
        # next test gets a fresh stack
        _shared.stop(check=False)
        _shared = None
    if _shared is None:
        _shared = Stack(name="shared")
    _touched.add(_shared)
    return _shared


def front_independent(func):
    """Marks a test of an HTTP suite (a module with FRONTS = harness.FRONTS) that does not go
    through the front end (FastCGI straight to a program, CGI, flags): run.py runs it once."""
    func.fronts = ("nginx",)
    return func


def single_redis_only(reason):
    """Marks a test that cannot run on a Redis Cluster (it stops or restarts the one Redis, say):
    run.py runs it in the single-Redis passes only. reason says why, and which test covers the
    same behaviour on the cluster."""
    def mark(func):
        func.redis_kinds = ("single",)
        func.single_redis_reason = reason
        return func
    return mark


def only_front(front):
    """Marks a test about one front end itself (its shipped config): run.py runs it there only."""
    def mark(func):
        func.fronts = (front,)
        return func
    return mark


def set_pass(front, redis):
    """Makes front ("nginx" or "apache") the front end and redis ("single" or "cluster") the Redis
    that new stacks (and the shared one) get; run.py calls it before each pass. The shared stack
    of another front or Redis is stopped; returns the problems found while stopping it."""
    global FRONT, REDIS_KIND, _shared
    for value, known, what in ((front, FRONTS, "front"), (redis, REDIS_KINDS, "Redis kind")):
        if value not in known:
            raise HarnessError("unknown %s %r (one of %s)" % (what, value, ", ".join(known)))
    problems = []
    if _shared is not None and (_shared.front, _shared.redis_kind) != (front, redis):
        problems = _shared.stop(check=False)
        _shared = None
    FRONT, REDIS_KIND = front, redis
    return problems


_cluster = None
# the stacks a test used since it began (made, or sent a request or a Redis command): a stack
# started on the shared cluster while none of them is live empties it first (before_test)
_touched = set()


_pending_problems = []   # found while stopping the idle shared stack; after_test() reports them


def _stop_idle_shared(new):
    """Stops the shared stack when it is on the shared cluster and the test has not used it:
    a stack of the test's own then has the cluster to itself (its programs' subscriptions and
    connections alone), as it would have a redis-server of its own."""
    global _shared
    if _shared is not None and _shared is not new and not _shared.stopped \
            and _shared.cluster is _cluster and _shared not in _touched:
        _pending_problems.extend(_shared.stop(check=False))
        _shared = None


def flush_cluster():
    """Empties the shared cluster: FLUSHALL on every master."""
    if _cluster is not None:
        for n in _cluster.masters():
            n.call("FLUSHALL")


def shared_cluster():
    """The test process's Redis Cluster (tests/cluster.py, 3 masters + 3 replicas), started on
    first use; every stack of the "cluster" kind runs on it. Stopped by stop_all()."""
    global _cluster
    if _cluster is not None and len(_cluster.live()) < len(_cluster.nodes):
        _cluster.stop()          # a node died (a test killed it): the next test gets a new one
        _cluster = None
    if _cluster is None:
        import cluster
        _cluster = cluster.Cluster()
    return _cluster


def before_test():
    """Called by run.py before every test: empties the shared stack's Redis (FLUSHALL; on the
    cluster kind, on every master of the shared cluster), so that each test starts on an empty
    Redis as a stack of its own would give it, whatever the tests before it left (the shared
    stack's programs keep their connections). On the cluster, a stack started later in the test
    empties it again unless another stack of the test is still live on it; a cluster one of
    whose nodes died is replaced (with the shared stack on it)."""
    global _cluster, _shared
    _touched.clear()
    if _shared is not None and not _shared.stopped and not _shared.cluster \
            and _shared.redis_proc is not None and _shared.redis_proc.alive():
        _shared.redis("FLUSHALL")
    if REDIS_KIND != "cluster" or _cluster is None:
        return
    if len(_cluster.live()) < len(_cluster.nodes):
        if _shared is not None and _shared.cluster is _cluster:
            _shared.stop(check=False)
            _shared = None
        _cluster.stop()
        _cluster = None
        return
    flush_cluster()


def after_test():
    """Called by run.py after every test: stops workers started on the shared stack, and
    returns problems found (unexpected deaths) so that the test counts as failed."""
    pending = list(_pending_problems)
    del _pending_problems[:]
    if _shared is None or _shared.stopped:
        return pending
    problems = pending + list(_shared.problems)
    _shared.problems = []
    problems += _shared.check_alive()
    _shared.problems = []
    ws, _shared.workers = _shared.workers, []
    for w in ws:
        if w.alive():
            rc, _, killed = w.proc.stop(signal.SIGTERM, w.grace + 5)
            if killed:
                problems.append("worker pid %d did not stop within %s s of SIGTERM"
                                % (w.pid, w.grace + 5))
    problems += scan_sanitizer_reports([w.proc for w in ws])
    if problems:
        _shared.problems = []
    return problems


def after_module():
    """Called by run.py after each module's tests in a pass: stops every stack but the shared one
    (a module may keep stacks across its tests, never beyond them: on the shared cluster, a
    worker left running would claim the next module's jobs). Returns the problems found."""
    problems = []
    for s in list(_STACKS):
        if s is not _shared:
            problems += ["stack %s: %s" % (s.name, p) for p in s.stop(check=False)]
    return problems


def stop_all():
    """Stops every stack still running; returns the problems found (sanitizer reports, processes
    that died or did not stop)."""
    global _shared
    global _cluster
    problems = []
    for s in list(_STACKS):
        problems += ["stack %s: %s" % (s.name, p) for p in s.stop(check=False)]
    _shared = None
    if _cluster is not None:
        _cluster.stop()
        _cluster = None
    return problems


def cgi(program, method, uri, body=b"", headers=None, env=None, timeout=30):
    """Runs a program once as plain CGI (request in the environment, body on stdin) and parses
    its output. Returns (Response, stderr text, exit code)."""
    if isinstance(body, str):
        body = body.encode()
    e = _base_env()
    e.update(fcgi_params(method, uri, body, headers))
    e.update(env or {})
    p = subprocess.run([binary(program)], input=body, env=e, capture_output=True, timeout=timeout,
                       preexec_fn=_child_setup)
    err = p.stderr.decode("utf-8", "replace")
    hits = [pat for pat in SAN_PATTERNS if pat in err]
    if hits:
        raise SanitizerError("sanitizer report from CGI run of %s:\n%s" % (program, err[:4000]))
    return parse_cgi_response(p.stdout, "cgi %s %s %s" % (program, method, uri)), err, p.returncode
