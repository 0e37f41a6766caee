"""The FastCGI side of a web program, spoken to directly on its socket (no nginx): how jobgate's
own record reader (shared/fcgiparse.c) and writer (shared/fcgi.c) behave with what a web server,
or anyone who reaches the socket, sends — records cut anywhere, management records, a second
request id, oversized or endless input, a peer that leaves mid-answer. Each test also shows the
program goes on serving afterwards."""

import json
import socket
import struct
import time

import harness
from harness import check, eq, stack

FCGI_ABORT, FCGI_GET_VALUES, FCGI_GET_VALUES_RESULT, FCGI_UNKNOWN_TYPE = 2, 9, 10, 11


def _program(s, name, threads=1, args=()):
    """A second instance of program name (spawn-fcgi, as the stack's), with threads request
    threads; returns its socket path once it accepts."""
    s.start_program(name, n=7, args=list(args), threads=threads)
    path = s.sock(name, 7)
    harness.wait_until(lambda: harness.accepts(path), 10, "socket of the second " + name)
    return path


def _records(conn, until, what, rid=None):
    """Reads records from conn up to one of type until (of request id rid, when given);
    returns [(type, id, content)]."""
    out, buf = [], b""
    while True:
        while len(buf) >= 8:
            _, rtype, got_id, clen, plen, _ = struct.unpack("!BBHHBB", buf[:8])
            if len(buf) < 8 + clen + plen:
                break
            out.append((rtype, got_id, buf[8:8 + clen]))
            buf = buf[8 + clen + plen:]
            if rtype == until and rid in (None, got_id):
                return out
        chunk = conn.recv(65536)
        if not chunk:
            raise AssertionError("%s: closed before a record of type %d (got %r)"
                                 % (what, until, out))
        buf += chunk


def _still_serves(path, job, what):
    r = harness.fcgi_request(path, harness.fcgi_params("GET", "/api/jobs/" + job["id"]),
                             timeout=15, what=what)
    eq(r.status, 200, what)
    eq(r.json()["id"], job["id"], what + ": the job")


def test_a_request_sent_a_byte_at_a_time_is_answered_like_one_sent_whole():
    s = stack()
    job = s.submit(type="echo", payload={"k": "v" * 300})
    params = harness.fcgi_params("GET", "/api/jobs/" + job["id"],
                                 headers={"X-Long": "h" * 400})   # a 4-byte length
    whole = harness.fcgi_request(s.sock("status"), params, what="sent whole")
    eq(whole.status, 200, "GET sent whole")
    data = harness.fcgi_request_bytes(params, keep_conn=True)
    with harness.fcgi_connect(s.sock("status"), timeout=15) as c:
        for round_ in range(2):   # twice on one kept-alive connection
            for i in range(len(data)):
                c.send(data[i:i + 1])
                if i % 64 == 0:
                    time.sleep(0.001)   # so that the program does read single bytes
            r = harness.fcgi_read_response(c, "sent a byte at a time, request %d" % round_)
            eq(r.status, 200, "GET sent a byte at a time, request %d" % round_)
            eq(r.body, whole.body, "the same job as the request sent whole")


def test_fastcgi_management_records_are_answered_as_libfcgi_did():
    s = stack()
    job = s.submit(type="echo")
    names = [b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS", b"NOT_A_VALUE"]
    q = b"".join(bytes([len(n), 0]) + n for n in names)
    with harness.fcgi_connect(s.sock("status"), timeout=10) as c:
        c.sendall(harness._fcgi_record(FCGI_GET_VALUES, q, 0))
        got = _records(c, FCGI_GET_VALUES_RESULT, "FCGI_GET_VALUES")
        eq(got[-1][2], b"\x0e\x01FCGI_MAX_CONNS1\x0d\x01FCGI_MAX_REQS1\x0f\x01FCGI_MPXS_CONNS0",
           "FCGI_GET_VALUES_RESULT (one connection, one request, no multiplexing)")
        c.sendall(harness._fcgi_record(42, b"xyz", 0))
        got = _records(c, FCGI_UNKNOWN_TYPE, "a management record of type 42")
        eq(got[-1][2], bytes([42, 0, 0, 0, 0, 0, 0, 0]), "FCGI_UNKNOWN_TYPE names type 42")
        c.sendall(harness.fcgi_request_bytes(
            harness.fcgi_params("GET", "/api/jobs/" + job["id"])))
        eq(harness.fcgi_read_response(c, "a request after them").status, 200,
           "a request on the same connection after the management records")


def test_a_second_request_id_while_one_is_active_is_refused_and_the_first_answered():
    s = stack()
    job = s.submit(type="echo")
    first = harness.fcgi_request_bytes(harness.fcgi_params("GET", "/api/jobs/" + job["id"]))
    begin2 = harness._fcgi_record(harness.FCGI_BEGIN, struct.pack("!HB5x", 1, 0), 2)
    with harness.fcgi_connect(s.sock("status"), timeout=10) as c:
        c.sendall(first[:16] + begin2 + first[16:])   # after request 1's BEGIN_REQUEST
        got = _records(c, harness.FCGI_END, "two request ids", rid=1)
        eq((got[0][0], got[0][1], got[0][2][4]), (harness.FCGI_END, 2, 1),
           "request 2 ends at once with FCGI_CANT_MPX_CONN (type, id, protocol status)")
        out = b"".join(content for t, rid, content in got if t == harness.FCGI_STDOUT)
        check(out.startswith(b"Status: 200"), "request 1 is answered 200", got)


def test_a_params_length_of_2_31_closes_the_connection_and_the_program_goes_on_serving():
    s = stack()
    job = s.submit(type="echo")
    path = _program(s, "status")
    begin = harness._fcgi_record(harness.FCGI_BEGIN, struct.pack("!HB5x", 1, 0))
    huge = harness._fcgi_record(harness.FCGI_PARAMS, b"\x01\xff\xff\xff\xffA")
    with harness.fcgi_connect(path, timeout=10) as c:
        c.sendall(begin + huge + harness._fcgi_record(harness.FCGI_PARAMS, b""))
        c.settimeout(5)
        eq(c.recv(100), b"", "what a peer declaring a 2^31-byte value gets (closed)")
    _still_serves(path, job, "the only thread serves the next request")
    check("FCGI_PARAMS lengths overrun" in s.program_log("status"),
          "the log says why the connection was closed", s.program_log("status")[-500:])


def test_headers_over_the_parameter_limit_are_413_payload_too_large():
    s = stack()
    job = s.submit(type="echo")
    params = harness.fcgi_params("GET", "/api/jobs/" + job["id"],
                                 headers={"X-Big-%d" % i: "b" * 60000 for i in range(5)})
    r = harness.fcgi_request(s.sock("status"), params, what="300 KB of headers")
    harness.expect_error(r, 413, "payload_too_large")
    check("headers" in r.json()["error"]["message"], "the message says what was too large",
          r.json())
    _still_serves(s.sock("status"), job, "the program after the 413")


def test_a_body_over_the_limit_without_content_length_is_413_and_the_connection_kept():
    s = stack()
    body = json.dumps({"type": "echo", "payload": "x" * (1 << 20)}).encode()
    params = harness.fcgi_params("POST", "/api/jobs", headers={"Content-Type": "application/json"})
    params["CONTENT_LENGTH"] = ""   # nothing declared: the limit applies to what arrives
    with harness.fcgi_connect(s.sock("submit"), timeout=15) as c:
        c.sendall(harness.fcgi_request_bytes(params, body, keep_conn=True))
        harness.expect_error(harness.fcgi_read_response(c, "1 MiB + body"), 413,
                             "payload_too_large")
        small = json.dumps({"type": "echo"}).encode()
        params["CONTENT_LENGTH"] = str(len(small))
        c.sendall(harness.fcgi_request_bytes(params, small, keep_conn=True))
        eq(harness.fcgi_read_response(c, "the next request").status, 202,
           "the next POST on the same kept-alive connection")


def test_a_body_that_never_ends_is_closed_after_read_timeout_and_frees_the_thread():
    s = stack()
    job = s.submit(type="echo")
    path = _program(s, "submit", args=["--read-timeout", "2"])
    params = harness.fcgi_params("POST", "/api/jobs", headers={"Content-Type": "application/json"})
    data = harness.fcgi_request_bytes(params, b'{"type":"echo"}')
    endless = data[:-8]   # all but the empty STDIN record
    with harness.fcgi_connect(path, timeout=10) as c:
        c.sendall(endless)
        t0 = time.monotonic()
        c.settimeout(8)
        try:
            while c.recv(4096):
                pass
        except socket.timeout:
            raise AssertionError("a body without its end: expected the program to close the "
                                 "connection after --read-timeout 2, got nothing in 8 s")
        took = time.monotonic() - t0
        check(1.5 <= took, "closed at --read-timeout (2 s), not before", took)
    r = harness.fcgi_request(path, params, b'{"type":"echo"}', timeout=10, what="after it")
    eq(r.status, 202, "the only thread takes the next POST")
    eq(s.wait_status(job["id"], ("queued", "running", "done"))["id"], job["id"],
       "earlier jobs untouched")


def test_a_client_that_leaves_mid_answer_frees_the_thread():
    s = stack()
    s.start_worker()
    big = s.submit(type="echo", payload={"blob": "z" * 900000})
    s.wait_status(big["id"], "done")
    path = _program(s, "status")
    req = harness.fcgi_request_bytes(harness.fcgi_params("GET", "/api/jobs/" + big["id"]))
    for _ in range(3):
        c = harness.fcgi_connect(path, timeout=10)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sendall(req)
        c.recv(100)   # the answer has begun
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()     # and the client is gone (a reset) long before its end
    t0 = time.monotonic()
    r = harness.fcgi_request(path, harness.fcgi_params("GET", "/api/jobs/" + big["id"]),
                             timeout=15, what="after three clients left")
    eq(r.status, 200, "the only thread answers the next request")
    eq(len(r.json()["result"]["blob"]), 900000, "the whole answer")
    check(time.monotonic() - t0 < 9, "not after the 10 s send timeout", time.monotonic() - t0)
