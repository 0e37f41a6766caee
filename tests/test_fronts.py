"""What a program sees of a request, and how a program that is down or back is answered, the same
behind both front ends (contract section 11: nginx/jobgate.conf and apache/jobgate.conf route
the same URLs to the same programs). A FastCGI listener on a program's socket records the
parameters the shipped front-end config sends it; the other programs are the real ones."""

import os
import signal
import socket
import struct
import threading

import harness
from harness import check, eq, expect_error

# HTTP suite: runs behind nginx and again behind Apache (run.py)
FRONTS = harness.FRONTS


class RecordingProgram:
    """Listens on a program's unix socket in place of the program: records the FastCGI
    parameters and body of each request and answers 200 {"seen":true}."""

    def __init__(self, path):
        self.path = path
        self.requests = []       # [(params dict, body bytes)]
        with_suppress_unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.listen(64)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        buf, params, body = b"", b"", b""
        try:
            c.settimeout(30)
            while True:
                while len(buf) >= 8:
                    _, rtype, rid, clen, plen, _ = struct.unpack("!BBHHBB", buf[:8])
                    if len(buf) < 8 + clen + plen:
                        break
                    content, buf = buf[8:8 + clen], buf[8 + clen + plen:]
                    if rtype == harness.FCGI_PARAMS:
                        params += content
                    elif rtype == harness.FCGI_STDIN and content:
                        body += content
                    elif rtype == harness.FCGI_STDIN:          # end of the request
                        self.requests.append((_decode_params(params), body))
                        out = (b"Status: 200 OK\r\nContent-Type: application/json\r\n"
                               b"X-Content-Type-Options: nosniff\r\n\r\n{\"seen\":true}")
                        c.sendall(harness._fcgi_record(harness.FCGI_STDOUT, out, rid)
                                  + harness._fcgi_record(harness.FCGI_STDOUT, b"", rid)
                                  + harness._fcgi_record(harness.FCGI_END, b"\0" * 8, rid))
                        params, body = b"", b""
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()
        with_suppress_unlink(self.path)


def with_suppress_unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _decode_params(data):
    out, i = {}, 0

    def length():
        nonlocal i
        if data[i] < 128:
            i += 1
            return data[i - 1]
        n = struct.unpack("!I", data[i:i + 4])[0] & 0x7FFFFFFF
        i += 4
        return n
    while i < len(data):
        kl = length()
        vl = length()
        k, v = data[i:i + kl], data[i + kl:i + kl + vl]
        i += kl + vl
        out[k.decode("latin-1")] = v.decode("latin-1")
    return out


def test_programs_see_the_raw_request_uri_method_query_and_headers():
    # jobgate-cache's socket is the recording listener; the raw URI keeps its %-escapes
    with harness.Stack(programs=("submit", "status"), name="params") as s:
        rec = RecordingProgram(s.sock("cache"))
        try:
            key = "ab%2Fc%20d"
            uri = "/api/cache/%s?ttl=60&x=%%2F+y" % key
            body = b'{"a":[1,2,3]}'
            headers = {"Content-Type": "application/json", "Authorization": "Bearer tok-123",
                       "If-None-Match": '"7"', "Idempotency-Key": "order-1",
                       "Last-Event-ID": "17-0", "Origin": "https://app.example",
                       "Accept": "text/event-stream", "X-Forwarded-For": "203.0.113.9",
                       "Proxy": "http://evil.example:3128"}
            r = s.request("PUT", uri, body=body, headers=headers, prefix=False)
            eq((r.status, r.json()), (200, {"seen": True}), "PUT %s through %s" % (uri, s.front))
            eq(len(rec.requests), 1, "requests the program saw")
            p, got_body = rec.requests[0]
            # (the query too: the programs take it from the raw REQUEST_URI)
            seen = {k: p.get(k) for k in ("REQUEST_METHOD", "REQUEST_URI",
                                          "CONTENT_TYPE", "CONTENT_LENGTH", "REMOTE_ADDR",
                                          "HTTP_AUTHORIZATION", "HTTP_IF_NONE_MATCH",
                                          "HTTP_IDEMPOTENCY_KEY", "HTTP_LAST_EVENT_ID",
                                          "HTTP_ORIGIN", "HTTP_ACCEPT", "HTTP_X_FORWARDED_FOR")}
            eq(seen, {"REQUEST_METHOD": "PUT", "REQUEST_URI": uri,
                      "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
                      "REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": "Bearer tok-123",
                      "HTTP_IF_NONE_MATCH": '"7"', "HTTP_IDEMPOTENCY_KEY": "order-1",
                      "HTTP_LAST_EVENT_ID": "17-0", "HTTP_ORIGIN": "https://app.example",
                      "HTTP_ACCEPT": "text/event-stream", "HTTP_X_FORWARDED_FOR": "203.0.113.9"},
               "the CGI parameters jobgate-cache saw behind %s" % s.front)
            eq(got_body, body, "the body the program read")
            check("HTTP_PROXY" not in p, "no Proxy header reaches the program (httpoxy) behind %s"
                  % s.front, p.get("HTTP_PROXY"))
        finally:
            rec.close()


def test_a_program_back_after_being_down_is_served_at_once():
    with harness.Stack(programs=("submit", "status"), name="comeback") as s:
        jid = s.submit(type="echo")["id"]
        proc = s.program_procs("status")[0]
        proc.stop(signal.SIGTERM, 10)
        r = s.request("GET", "/jobs/" + jid)
        expect_error(r, 503, "unavailable")
        eq(r.headers.get("Retry-After"), "1", "Retry-After while jobgate-status is down")
        s.start_program("status")
        harness.wait_until(lambda: harness.accepts(s.sock("status")), 10, "socket of status")
        # no grace period in the front (Apache's mod_proxy would otherwise refuse a worker in
        # error for 60 s): the first request once the program listens is served
        r = s.request("GET", "/jobs/" + jid)
        eq(r.status, 200, "GET /jobs/{id} right after jobgate-status is back behind %s (%r)"
           % (s.front, r))
