"""Clients that send or read slowly. A body streamed by its front (Apache's mod_proxy_fcgi sends
what it has as it gets it; nginx buffers it first), or a FastCGI peer that stops mid-record,
holds no request thread while the request is not all there: the thread shelves it with its
connection (conns.h) and serves others; whichever thread the next bytes wake takes it up. The
shelf's memory is bounded; --read-timeout closes what never ends; SIGTERM keeps the threads for
shelved requests until they are whole (within --grace). Likewise an answer that its reader
takes slowly (Apache passes it on as its client reads it; nginx buffers it) is finished by the
event loop (jg_loop_finish), not by a request thread."""

import json
import os
import signal
import socket
import threading
import time

import harness
from harness import check, eq

# HTTP suite: runs behind nginx and again behind Apache, and on the cluster (run.py)
FRONTS = harness.FRONTS

THREADS = 2   # the programs' request threads: fewer than the slow uploads below


def _open_upload(s, body):
    """A POST /api/jobs to the front that has sent its headers and the first half of body."""
    head = ("POST /api/jobs HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)).encode()
    with harness.in_netns(s.netns):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    c.sendall(head + body[:len(body) // 2])
    return c


def _finish_upload(c, body):
    """Sends the rest of body and returns the front's answer."""
    c.sendall(body[len(body) // 2:])
    with c:
        return harness.parse_http_response(harness.read_until_closed(c), "a slow upload")


def test_slow_uploads_more_than_the_request_threads_do_not_hold_back_other_requests():
    # --read-timeout 60: a thread held by a slow upload would stay held past the 10 s a plain
    # submit below is given
    with harness.Stack(threads=THREADS, name="slowup", program_args=["--read-timeout", "60"]) as s:
        bodies = [json.dumps({"type": "echo", "payload": {"n": i, "pad": "x" * 3000}}).encode()
                  for i in range(4 * THREADS)]
        s.start_worker()
        uploads = [_open_upload(s, b) for b in bodies]
        try:
            time.sleep(0.5)   # the halves reach the program (through Apache) or wait in nginx
            for k in range(3):
                r = s.request("POST", "/jobs", json={"type": "echo", "payload": {"k": k}},
                              timeout=10)
                eq(r.status, 202, "a whole submit while %d uploads are half sent" % len(uploads))
                eq(s.wait_status(r.json()["id"], "done")["result"], {"k": k}, "its job")
            eq(s.request("GET", "/jobs/" + r.json()["id"], timeout=10).status, 200,
               "a status read meanwhile")
            for i, (c, b) in enumerate(zip(uploads, bodies)):
                r = _finish_upload(c, b)
                eq(r.status, 202, "slow upload %d once whole" % i)
                eq(s.wait_status(r.json()["id"], "done")["result"], json.loads(b)["payload"],
                   "slow upload %d's job has its whole payload" % i)
        finally:
            for c in uploads:
                c.close()


def _own_program(s, name, args, env=None):
    """jobgate-<name> on a socket of its own with args, registered with the stack: its socket's
    path and its Proc."""
    path = os.path.join(s.dir, "own-%s-%d.sock" % (name, time.monotonic_ns()))
    proc = harness.Proc(name + "-own", [harness.binary(name), "--socket", path] + list(args),
                        s.program_env(env), path + ".log")
    s.procs.setdefault(name + "-own", []).append(proc)
    harness.wait_until(lambda: harness.accepts(path), 10, "the program's own socket")
    return path, proc


def _post_bytes(payload):
    body = json.dumps({"type": "echo", "payload": payload}).encode()
    params = harness.fcgi_params("POST", "/api/jobs", body, {"Content-Type": "application/json"})
    return harness.fcgi_request_bytes(params, body)


@harness.front_independent
def test_a_request_half_read_at_sigterm_is_still_answered_within_grace():
    s = harness.stack()
    path, proc = _own_program(s, "submit", ["--threads", "1", "--grace", "8"])
    data = _post_bytes({"at": "sigterm"})
    c = harness.fcgi_connect(path, timeout=15)
    try:
        c.sendall(data[:len(data) - 20])     # all but the end of the body
        time.sleep(0.3)
        r = harness.fcgi_request(path, harness.fcgi_params("GET", "/api/jobs/nosuch"),
                                 timeout=10, what="the one thread, meanwhile")
        eq(r.status, 404, "the program's only thread serves others meanwhile")
        proc.signal(signal.SIGTERM)
        harness.wait_until(lambda: "stopping: no new connections" in proc.log(), 10,
                           "the stopping line")
        time.sleep(0.3)
        check(proc.alive(), "still running: a request is half read", proc.log()[-300:])
        c.sendall(data[len(data) - 20:])
        r = harness.fcgi_read_response(c, "the request finished after SIGTERM")
        eq(r.status, 202, "the request finished after SIGTERM is served")
        eq(s.job(r.json()["id"])["status"], "queued", "and its job made")
    finally:
        c.close()
    rc, took, killed = proc.stop(signal.SIGTERM, 10)
    check(not killed and rc == 0, "exits 0 once it is served", (rc, took, proc.log()[-300:]))
    check("clean=yes" in proc.log(), "a clean stop", proc.log()[-300:])


def _settled_rss(pid):
    """The process's RSS once it stops changing (it takes no more of what peers send)."""
    last, stable = -1, 0
    while stable < 3:
        time.sleep(0.2)
        now = _rss_bytes(pid)
        stable = stable + 1 if now == last else 0
        last = now
    return last


def _rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@harness.front_independent
def test_many_bodies_that_never_end_hold_bounded_memory_and_are_closed_at_read_timeout():
    # 120 requests of 1,000,000 body bytes each (JOBGATE_MAX_BODY 1 MiB keeps them), all but
    # their end: the shelf keeps at most 64 MiB of them (conns.h), the two threads one each;
    # the rest wait in the kernel's socket buffers, not in the program
    s = harness.stack()
    # under AddressSanitizer (make test SANITIZE=1) freed memory is held in a quarantine that
    # would count in the RSS: keep it small, so that what is measured is what the program holds
    san = {"ASAN_OPTIONS": harness.SAN_ENV["ASAN_OPTIONS"] + ":quarantine_size_mb=4"}
    path, proc = _own_program(s, "submit", ["--threads", "2", "--read-timeout", "4", "--grace",
                                            "2"], san)
    base = _rss_bytes(proc.pid)
    data = _post_bytes({"blob": "b" * 1000000})
    endless = data[:-8]   # all but the empty STDIN record
    conns, sent = [], [0]

    def send(c):
        try:
            c.sendall(endless)
            sent[0] += 1
        except OSError:
            pass   # closed by the program at --read-timeout
    for _ in range(120):
        c = harness.fcgi_connect(path, timeout=30)
        conns.append(c)
        threading.Thread(target=send, args=(c,), daemon=True).start()
    try:
        held = _settled_rss(proc.pid) - base   # the shelf is full
        check(held <= (64 << 20) + 2 * (3 << 20) + (12 << 20),
              "memory of 120 endless 1 MB bodies: the shelf (64 MiB) and the threads' two, "
              "not 120 MB", held)
        check(held >= 32 << 20, "some were shelved (else this test shows nothing)", held)
        closed = [c for c in conns if _closed(c, 15)]
        eq(len(closed), len(conns), "every endless request closed at --read-timeout")
        r = harness.fcgi_request(path, harness.fcgi_params("GET", "/api/jobs/nosuch"),
                                 timeout=10, what="after them")
        eq(r.status, 404, "the program serves the next request")
    finally:
        for c in conns:
            c.close()
    check("did not deliver its request in time" in proc.log(), "the log says why",
          proc.log()[-300:])
    rc, took, killed = proc.stop(signal.SIGTERM, 10)
    check(not killed and rc == 0, "exits 0 on SIGTERM", (rc, took))


def _closed(c, seconds):
    """Has the program closed c (EOF or a reset) within seconds?"""
    c.settimeout(seconds)
    try:
        while c.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


BIG = 6000000   # bytes of a job's result: more than the sockets and a front's buffers hold


def _big_job(s):
    """A done job whose result is {"blob": "rrr..."} of BIG bytes (over JOBGATE_MAX_BODY: made by
    a job type that writes it, not by an echo of a payload)."""
    script = os.path.join(s.dir, "bigresult.py")
    with open(script, "w") as f:
        f.write("import os\nwith open(os.environ['JOBGATE_RESULT_FILE'], 'w') as f:\n"
                "    f.write('{\"blob\":\"' + 'r' * %d + '\"}')\n" % BIG)
    s.start_worker(types={"bigresult": "exec python3 " + script})
    job = s.submit(type="bigresult")
    s.wait_status(job["id"], "done")
    return job["id"]


def _slow_reader(connect, request, rcvbuf=None):
    """A connection that sent request and reads nothing yet; it reads its answer later, whole.
    (A small receive buffer only on a unix socket: on TCP one below the loopback's MSS leaves
    the sender waiting for its zero-window probes, backing off to seconds.)"""
    c = connect()
    if rcvbuf:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.sendall(request)
    return c


def test_slow_readers_of_a_big_answer_more_than_the_threads_do_not_hold_back_other_requests():
    with harness.Stack(threads=THREADS, name="slowread") as s:
        jid = _big_job(s)
        small = s.submit(type="echo")
        request = ("GET /api/jobs/%s HTTP/1.0\r\nHost: localhost\r\n\r\n" % jid).encode()

        def connect():
            with harness.in_netns(s.netns):
                return socket.create_connection(("127.0.0.1", s.port), timeout=30)
        readers = [_slow_reader(connect, request) for _ in range(4 * THREADS)]
        try:
            time.sleep(1)   # the answers fill what the sockets hold; the rest waits
            for k in range(3):
                r = s.request("GET", "/jobs/" + small["id"], timeout=8)
                eq(r.status, 200, "a small GET while %d readers take a big answer slowly"
                   % len(readers))
            for i, c in enumerate(readers):
                r = harness.parse_http_response(harness.read_until_closed(c),
                                                "slow reader %d" % i)
                eq(r.status, 200, "slow reader %d's answer" % i)
                eq(len(r.json()["result"]["blob"]), BIG, "slow reader %d's answer, whole" % i)
        finally:
            for c in readers:
                c.close()


@harness.front_independent
def test_fastcgi_peers_that_read_a_big_answer_slowly_get_it_whole_and_hold_no_thread():
    s = harness.stack()
    jid = _big_job(s)
    path, proc = _own_program(s, "status", ["--threads", "2", "--grace", "2"])
    request = harness.fcgi_request_bytes(harness.fcgi_params("GET", "/api/jobs/" + jid),
                                         keep_conn=True)
    readers = [_slow_reader(lambda: harness.fcgi_connect(path, timeout=30), request, 4096)
               for _ in range(6)]
    try:
        time.sleep(0.5)
        r = harness.fcgi_request(path, harness.fcgi_params("GET", "/api/jobs/nosuch"),
                                 timeout=8, what="while 6 peers read slowly")
        eq(r.status, 404, "the program's two threads serve others meanwhile")
        for i, c in enumerate(readers):
            r = harness.fcgi_read_response(c, "slow peer %d" % i)
            eq(len(r.json()["result"]["blob"]), BIG, "slow peer %d's answer, whole" % i)
            # kept alive: the connection serves its next request after the loop's write
            c.sendall(harness.fcgi_request_bytes(
                harness.fcgi_params("GET", "/api/jobs/nosuch"), keep_conn=True))
            eq(harness.fcgi_read_response(c, "slow peer %d, next" % i).status, 404,
               "slow peer %d's next request on the same connection" % i)
    finally:
        for c in readers:
            c.close()
    rc, took, killed = proc.stop(signal.SIGTERM, 10)
    check(not killed and rc == 0, "exits 0 on SIGTERM", (rc, took))


@harness.front_independent
def test_many_peers_that_do_not_read_their_answers_hold_bounded_memory_and_get_them_whole():
    # 160 peers GET a job of a 900 KB result and read nothing for a while: what their sockets
    # do not take (about 700 KB each, 110 MB in all) waits in the loop up to 64 MiB
    # (JG_LOOP_TAIL_BYTES); beyond that a thread writes its answer itself, as before
    s = harness.stack()
    s.start_worker()
    job = s.submit(type="echo", payload={"blob": "m" * 900000})
    s.wait_status(job["id"], "done")
    san = {"ASAN_OPTIONS": harness.SAN_ENV["ASAN_OPTIONS"] + ":quarantine_size_mb=4"}
    path, proc = _own_program(s, "status", ["--threads", "2", "--grace", "2"], san)
    base = _rss_bytes(proc.pid)
    request = harness.fcgi_request_bytes(harness.fcgi_params("GET", "/api/jobs/" + job["id"]))
    readers = [_slow_reader(lambda: harness.fcgi_connect(path, timeout=30), request, 4096)
               for _ in range(160)]
    try:
        held = _settled_rss(proc.pid) - base
        check(held <= (64 << 20) + (28 << 20),
              "memory of 160 unread 900 KB answers: the loop's 64 MiB and the threads' own, "
              "not 110 MB and more", held)
        check(held >= 32 << 20, "some answers wait in the loop (else this shows nothing)", held)
        for i, c in enumerate(readers):
            r = harness.fcgi_read_response(c, "peer %d" % i)
            eq(len(r.json()["result"]["blob"]), 900000, "peer %d's answer, whole" % i)
    finally:
        for c in readers:
            c.close()
    rc, took, killed = proc.stop(signal.SIGTERM, 10)
    check(not killed and rc == 0, "exits 0 on SIGTERM", (rc, took))


@harness.front_independent
def test_answers_the_loop_finishes_for_slow_readers_count_among_max_streams():
    # --max-streams 2: two peers that do not read a 6 MB answer hold both places, so a long poll
    # cannot park (503); once they have read their answers, it parks and waits as usual
    s = harness.stack()
    jid = _big_job(s)
    path, proc = _own_program(s, "status", ["--threads", "2", "--grace", "2",
                                            "--max-streams", "2"])
    job = s.job(jid)
    poll = harness.fcgi_params("GET", "/api/jobs/%s?wait=1" % jid,
                               headers={"If-None-Match": '"%d"' % job["version"]})
    request = harness.fcgi_request_bytes(harness.fcgi_params("GET", "/api/jobs/" + jid))
    readers = [_slow_reader(lambda: harness.fcgi_connect(path, timeout=30), request, 4096)
               for _ in range(2)]
    try:
        time.sleep(0.5)
        r = harness.fcgi_request(path, poll, timeout=10, what="a long poll, both places taken")
        harness.expect_error(r, 503, "unavailable")
        for i, c in enumerate(readers):
            r = harness.fcgi_read_response(c, "peer %d" % i)
            eq(len(r.json()["result"]["blob"]), BIG, "peer %d's answer, whole" % i)
    finally:
        for c in readers:
            c.close()
    harness.wait_until(lambda: harness.fcgi_request(path, poll, timeout=10).status == 304, 10,
                       "a long poll that parks again once the answers are out")
    rc, took, killed = proc.stop(signal.SIGTERM, 10)
    check(not killed and rc == 0, "exits 0 on SIGTERM", (rc, took))
