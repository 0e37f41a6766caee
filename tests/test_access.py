"""Access and limits (contract section 8, issue 10), through each front: write and read tokens on every
route, ?access_token= on the logs route only, the Redis-wide rate limit shared by two processes,
X-Forwarded-For only when trusted, Idempotency-Keys scoped per caller (and freed again when the
request that took one died), CORS with tokens, and no secret in any log or --check output."""

import hashlib
import http.client
import json
import os
import subprocess
import time
import urllib.parse

import harness
from harness import check, eq, expect_error

# HTTP suite: runs behind nginx and again behind Apache (run.py)
FRONTS = harness.FRONTS

P = "jobgate"
KEY = "ab" * 32   # a valid cache key


def _tok(stem):
    return "%s-%s" % (stem, os.urandom(8).hex())


W1, W2, R1, R2 = _tok("write1"), _tok("write2"), _tok("read1"), _tok("read2")
WRONG = _tok("wrong")
TOKENS = {"JOBGATE_API_TOKENS": "%s, %s" % (W1, W2), "JOBGATE_READ_TOKENS": "%s,%s" % (R1, R2)}


def bearer(token):
    return {"Authorization": "Bearer " + token} if token else {}


def post_json(s, path, body, token=None, headers=None, method="POST"):
    h = {"Content-Type": "application/json"}
    h.update(bearer(token))
    h.update(headers or {})
    return s.request(method, path, body=json.dumps(body) if not isinstance(body, str) else body,
                     headers=h)


def expect_401(r, invalid):
    """401 unauthorized with the RFC 6750 challenge; error="invalid_token" when a token was sent."""
    expect_error(r, 401, "unauthorized")
    want = 'Bearer realm="jobgate"' + (', error="invalid_token"' if invalid else "")
    eq(r.headers.get("WWW-Authenticate"), want, "WWW-Authenticate of %s" % r.what)


def sse_open(s, path, headers=None):
    """Opens a log stream through nginx; returns (status, headers, first line), then closes."""
    u = urllib.parse.urlsplit(s.base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
    try:
        h = {"Accept": "text/event-stream"}
        h.update(headers or {})
        c.request("GET", u.path + path, headers=h)
        r = c.getresponse()
        first = r.readline().decode() if r.status == 200 else r.read().decode()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, first
    finally:
        c.close()


# ---- Write tokens ----------------------------------------------------------------------------------

def write_calls(s, job_id):
    """(what, a function token -> response, expected success status) for every write route that a
    running program serves. The admin program's write routes carry the same class in the route
    table (unit test access_classes_of_every_route)."""
    return [
        ("POST /jobs", lambda t: post_json(s, "/jobs", {"type": "echo", "delay": 600}, t), 202),
        ("POST /jobs/{id}/cancel",
         lambda t: s.request("POST", "/jobs/%s/cancel" % job_id(), headers=bearer(t)), 200),
        ("PUT /cache/{key}",
         lambda t: post_json(s, "/cache/" + KEY, [1], t, method="PUT"), 204),
        ("DELETE /cache/{key}",
         lambda t: s.request("DELETE", "/cache/" + KEY, headers=bearer(t)), 204),
        ("POST /cache/key", lambda t: post_json(s, "/cache/key", {"type": "echo"}, t), 200),
    ]


def test_write_routes_need_one_of_the_write_tokens():
    with harness.Stack(env={"JOBGATE_API_TOKENS": "%s,%s" % (W1, W2)}, name="wtok") as s:
        jobs = []

        def job_id():   # a fresh queued job for each cancel (made with a token)
            r = post_json(s, "/jobs", {"type": "echo", "delay": 600}, W1)
            eq(r.status, 202, "submit with a write token")
            jobs.append(r.json()["id"])
            return jobs[-1]
        for what, call, ok in write_calls(s, job_id):
            if what == "DELETE /cache/{key}":   # something to delete
                eq(post_json(s, "/cache/" + KEY, [1], W2, method="PUT").status, 204, "PUT")
            jid = job_id() if "cancel" in what else None
            with s.unchanged("%s without a token" % what):
                for token, invalid in ((None, False), (WRONG, True), (W1 + "x", True),
                                       (W1[:-1], True), ("%s,%s" % (W1, W2), True)):
                    if jid:
                        r = s.request("POST", "/jobs/%s/cancel" % jid, headers=bearer(token))
                    else:
                        r = call(token)
                    expect_401(r, invalid)
            for token in (W1, W2):   # both tokens of the rotation work
                if what == "DELETE /cache/{key}":
                    post_json(s, "/cache/" + KEY, [1], W1, method="PUT")
                r = call(token)
                eq(r.status, ok, "%s with write token %s" % (what, "1" if token == W1 else "2"))
        # checked before the body is read: a broken body without a token is 401, not 400
        with s.unchanged("a broken body without a token"):
            expect_401(post_json(s, "/jobs", "{broken", None), False)
        # a token sent as ?access_token= is not taken on a write route
        r = s.request("POST", "/jobs?access_token=" + W1, body='{"type":"echo"}',
                      headers={"Content-Type": "application/json"})
        expect_401(r, False)
        # without read tokens, reads stay open
        eq(s.request("GET", "/jobs/" + jobs[0]).status, 200, "GET without JOBGATE_READ_TOKENS")


# ---- Read tokens -----------------------------------------------------------------------------------

def test_read_routes_need_a_read_or_write_token():
    with harness.Stack(env=TOKENS, name="rtok") as s:
        jid = post_json(s, "/jobs", {"type": "echo", "delay": 600}, W1).json()["id"]
        eq(post_json(s, "/cache/" + KEY, {"v": 1}, W2, method="PUT").status, 204, "PUT")
        reads = [
            ("GET /jobs/{id}", lambda h: s.request("GET", "/jobs/" + jid, headers=h)),
            ("HEAD /jobs/{id}", lambda h: s.request("HEAD", "/jobs/" + jid, headers=h)),
            ("GET /jobs/{id}/logs (polled)",
             lambda h: s.request("GET", "/jobs/%s/logs?limit=5" % jid, headers=h)),
            ("GET /cache/{key}", lambda h: s.request("GET", "/cache/" + KEY, headers=h)),
            ("HEAD /cache/{key}", lambda h: s.request("HEAD", "/cache/" + KEY, headers=h)),
        ]
        for what, call in reads:
            for token, invalid in ((None, False), (WRONG, True), (R1 + "0", True)):
                r = call(bearer(token))
                if what.startswith("HEAD"):
                    eq((r.status, r.headers.get("WWW-Authenticate")),
                       (401, 'Bearer realm="jobgate"' + (', error="invalid_token"' if invalid
                                                         else "")), "%s, token %r" % (what, token))
                else:
                    expect_401(r, invalid)
            for name, token in (("read 1", R1), ("read 2", R2), ("write 1", W1), ("write 2", W2)):
                eq(call(bearer(token)).status, 200, "%s with the %s token" % (what, name))
        # the stream: 401 before any stream byte; with a token, the event stream
        st, hdrs, _ = sse_open(s, "/jobs/%s/logs" % jid)
        eq((st, hdrs.get("www-authenticate")), (401, 'Bearer realm="jobgate"'), "SSE, no token")
        for token in (R1, W2):
            st, hdrs, first = sse_open(s, "/jobs/%s/logs" % jid, bearer(token))
            eq((st, hdrs.get("content-type"), first.strip()), (200, "text/event-stream",
                                                              "retry: 2000"), "SSE with a token")
        # a read token does not write
        expect_401(post_json(s, "/jobs", {"type": "echo"}, R1), True)
        expect_401(s.request("DELETE", "/cache/" + KEY, headers=bearer(R2)), True)
        # unknown routes and wrong methods answer as before, token or not
        expect_error(s.request("GET", "/nothing"), 404, "not_found")
        expect_error(s.request("PATCH", "/jobs/" + jid), 405, "method_not_allowed")


def test_access_token_in_the_query_is_taken_on_the_logs_route_only():
    with harness.Stack(env=TOKENS, name="qtok") as s:
        jid = post_json(s, "/jobs", {"type": "echo", "delay": 600}, W1).json()["id"]
        eq(post_json(s, "/cache/" + KEY, [2], W1, method="PUT").status, 204, "PUT")
        for token in (R1, W1):
            q = urllib.parse.quote(token)
            r = s.request("GET", "/jobs/%s/logs?limit=5&access_token=%s" % (jid, q))
            eq((r.status, r.json()["status"]), (200, "queued"), "polled logs with ?access_token=")
            st, hdrs, first = sse_open(s, "/jobs/%s/logs?access_token=%s" % (jid, q))
            eq((st, first.strip()), (200, "retry: 2000"), "SSE logs with ?access_token=")
        r = s.request("GET", "/jobs/%s/logs?access_token=%s" % (jid, WRONG))
        expect_401(r, True)
        for path in ("/jobs/%s?access_token=%s" % (jid, R1), "/cache/%s?access_token=%s" % (KEY, R1)):
            expect_401(s.request("GET", path), False)


# ---- Rate limit ------------------------------------------------------------------------------------

def test_rate_limit_is_shared_by_two_submit_processes_and_lifts_after_retry_after():
    n, secs = 4, 3
    with harness.Stack(env={"JOBGATE_RATE_LIMIT": "%d/%d" % (n, secs)}, programs=("submit",),
                       instances={"submit": 2}, name="ratelimit") as s:
        t0 = time.monotonic()
        answers = [post_json(s, "/jobs", {"type": "echo", "delay": 600}) for _ in range(n)]
        eq([r.status for r in answers], [202] * n, "the first %d submits" % n)
        r = post_json(s, "/jobs", {"type": "echo", "delay": 600})
        took = time.monotonic() - t0
        with s.unchanged("a submit over the rate limit"):
            r2 = post_json(s, "/jobs", {"type": "echo"})
        for x in (r, r2):
            expect_error(x, 429, "rate_limited")
            ra = x.headers.get("Retry-After", "")
            check(ra.isdigit() and 1 <= int(ra) <= secs,
                  "Retry-After in whole seconds, 1..%d" % secs, ra)
        if took < 0.9:   # all within the first second of the window: the window's full length
            eq(r.headers.get("Retry-After"), str(secs), "Retry-After right after %d submits" % n)
        served = [p.log().count("job submitted") for p in s.program_procs("submit")]
        eq(len(served), 2, "submit processes")
        check(all(c >= 1 for c in served), "both processes served counted submits", served)
        keys = s.redis("KEYS", "%s:rl:*" % P)
        eq(len(keys), 1, "rate-limit keys for one client")
        pttl = s.redis("PTTL", keys[0])
        check(0 < pttl <= secs * 1000, "the rate-limit key has a TTL of at most the window", pttl)
        check("127.0.0.1" not in keys[0], "the client address is hashed in the key", keys[0])
        time.sleep(int(r2.headers["Retry-After"]))
        eq(post_json(s, "/jobs", {"type": "echo", "delay": 600}).status, 202,
           "a submit after Retry-After")
        # reads and cancels are not counted
        eq(s.request("POST", "/jobs/%s/cancel" % answers[0].json()["id"]).status, 200,
           "a cancel while at the limit")


@harness.single_redis_only("stops the one Redis; on a cluster a master is killed instead "
                           "(cluster.a_master_killed_is_replaced_by_its_replica_with_no_restart)")
def test_a_rate_limited_submit_while_redis_is_away_is_503_never_let_through_uncounted():
    with harness.Stack(env={"JOBGATE_RATE_LIMIT": "4/3"}, programs=("submit",),
                       name="ratelimitdown") as s:
        eq(post_json(s, "/jobs", {"type": "echo", "delay": 600}).status, 202, "a counted submit")
        s.stop_redis()
        r = post_json(s, "/jobs", {"type": "echo"})
        expect_error(r, 503, "unavailable")
        eq(r.headers.get("Retry-After"), "1", "Retry-After of the 503")
        s.start_redis()


def test_x_forwarded_for_counts_only_with_trust_proxy():
    limit = {"JOBGATE_RATE_LIMIT": "1/60"}
    with harness.Stack(env=limit, programs=("submit",), name="xffno") as s:
        xff = lambda a: {"X-Forwarded-For": a}   # noqa: E731
        eq(post_json(s, "/jobs", {"type": "echo"}, headers=xff("192.0.2.1")).status, 202,
           "first submit")
        expect_error(post_json(s, "/jobs", {"type": "echo"}, headers=xff("192.0.2.2")), 429,
                     "rate_limited")   # another X-Forwarded-For, the same peer: same client
    with harness.Stack(env=dict(limit, JOBGATE_TRUST_PROXY="1"), programs=("submit",),
                       name="xffyes") as s:
        eq(post_json(s, "/jobs", {"type": "echo"}, headers=xff("192.0.2.1")).status, 202,
           "client 192.0.2.1")
        expect_error(post_json(s, "/jobs", {"type": "echo"}, headers=xff("192.0.2.1")), 429,
                     "rate_limited")
        # the last address is the client (the proxy appended it); earlier ones are ignored
        eq(post_json(s, "/jobs", {"type": "echo"}, headers=xff("192.0.2.1, 192.0.2.2")).status,
           202, "client 192.0.2.2 behind a forged 192.0.2.1")
        expect_error(post_json(s, "/jobs", {"type": "echo"},
                               headers=xff("198.51.100.7, 192.0.2.2")), 429, "rate_limited")
        # no header, or a last entry that is no address: the peer itself
        eq(post_json(s, "/jobs", {"type": "echo"}).status, 202, "the peer without a header")
        expect_error(post_json(s, "/jobs", {"type": "echo"}, headers=xff("not-an-address")), 429,
                     "rate_limited")
        eq(len(s.redis("KEYS", "%s:rl:*" % P)), 3, "rate-limit keys: three clients")


# ---- Idempotency-Key -------------------------------------------------------------------------------

def test_two_callers_with_one_idempotency_key_get_two_jobs():
    with harness.Stack(env={"JOBGATE_API_TOKENS": "%s,%s" % (W1, W2)}, programs=("submit",),
                       name="idemscope") as s:
        ik = {"Idempotency-Key": "order-1"}
        a = post_json(s, "/jobs", {"type": "echo", "delay": 600}, W1, ik)
        b = post_json(s, "/jobs", {"type": "echo", "delay": 600}, W2, ik)
        eq((a.status, b.status), (202, 202), "first requests of two callers with one key")
        check(a.json()["id"] != b.json()["id"], "two jobs", (a.json()["id"], b.json()["id"]))
        for token, first in ((W1, a), (W2, b)):
            r = post_json(s, "/jobs", {"type": "sleep"}, token, ik)
            eq((r.status, r.json()["id"]), (200, first.json()["id"]), "a repeat of one caller")
        keys = s.redis("KEYS", "%s:idem:*" % P)
        eq(len(keys), 2, "idempotency records")
        for k in keys:
            check(W1 not in k and W2 not in k and "order-1" not in k, "no token in a key", k)


def test_idempotency_key_whose_first_request_died_is_free_again_soon():
    with harness.Stack(programs=("submit", "status"), name="idemdead") as s:
        # what the first request writes before it creates its job: a short pending marker
        with s.monitor() as cmds:
            eq(post_json(s, "/jobs", {"type": "echo", "delay": 600}, None,
                         {"Idempotency-Key": "probe"}).status, 202, "a submit with a key")
        sets = [c for c in cmds if '"SET"' in c and ':idem:' in c]
        check(len(sets) == 2 and '"NX"' in sets[0] and '"PX" "10000"' in sets[0]
              and '"pending:' in sets[0], "a pending marker with NX, 10 s, then the job id", sets)
        # a first request that died right after taking its key leaves exactly that behind
        ik = "died-%s" % os.urandom(4).hex()
        name = "%s:idem:%s" % (P, hashlib.sha256(ik.encode()).hexdigest())
        s.redis("SET", name, "pending:37a8eec1.AAAAAAAAAAAAAAAAAAAAAA", "NX", "PX", "10000")
        with s.unchanged("a repeat while the key is pending"):
            r = post_json(s, "/jobs", {"type": "echo"}, None, {"Idempotency-Key": ik})
        expect_error(r, 409, "conflict")
        eq(r.headers.get("Retry-After"), "1", "Retry-After of a repeat in progress")
        # retried as Retry-After says, the key is free once the marker expires (10 s, not 24 h)
        t0 = time.monotonic()
        while True:
            r = post_json(s, "/jobs", {"type": "echo", "delay": 600}, None,
                          {"Idempotency-Key": ik})
            if r.status != 409 or time.monotonic() - t0 > 20:
                break
            time.sleep(int(r.headers.get("Retry-After", "1")))
        eq(r.status, 202, "a repeat after the dead request's marker expired")
        again = post_json(s, "/jobs", {"type": "sleep"}, None, {"Idempotency-Key": ik})
        eq((again.status, again.json()["id"]), (200, r.json()["id"]), "and its repeat")
        ttl = s.redis("TTL", name)
        check(86300 < ttl <= 86400, "the key names the new job for 24 h", ttl)


# ---- CORS ------------------------------------------------------------------------------------------

def test_cors_preflight_needs_no_token_and_401_carries_cors_headers():
    origin = "https://app.example"
    env = dict(TOKENS, JOBGATE_CORS_ORIGINS=origin)
    with harness.Stack(env=env, programs=("submit", "status", "logs"), name="corstok") as s:
        for path, method in (("/jobs", "POST"), ("/jobs/x/logs", "GET"), ("/jobs/x", "GET")):
            r = s.request("OPTIONS", path, headers={
                "Origin": origin, "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type"})
            eq(r.status, 204, "preflight of %s %s without a token" % (method, path))
            eq(r.headers.get("Access-Control-Allow-Origin"), origin, "Allow-Origin of it")
            allowed = [h.strip().lower() for h in
                       r.headers.get("Access-Control-Allow-Headers", "").split(",")]
            check("authorization" in allowed, "Authorization is an allowed header", allowed)
        for r in (post_json(s, "/jobs", {"type": "echo"}, None, {"Origin": origin}),
                  s.request("GET", "/jobs/x", headers=dict(bearer(WRONG), Origin=origin))):
            check(r.status == 401, "401", r)
            eq(r.headers.get("Access-Control-Allow-Origin"), origin, "Allow-Origin of a 401")
            expose = r.headers.get("Access-Control-Expose-Headers", "").lower()
            check("www-authenticate" in expose, "WWW-Authenticate exposed to the page", expose)


# ---- Secrets ---------------------------------------------------------------------------------------

@harness.single_redis_only("its Redis has a password; the test cluster has none "
                           "(cluster.check_shows_the_cluster_seeds_without_the_password masks a "
                           "cluster URL's)")
def test_no_token_or_password_in_any_log_check_output_or_job_environment():
    password = _tok("redispw")
    env = dict(TOKENS, JOBGATE_CORS_ORIGINS="*", JOBGATE_RATE_LIMIT="1000/60")
    secrets = [W1, W2, R1, R2, WRONG, password]
    with harness.Stack(env=env, redis_password=password, name="secrets") as s:
        w = s.start_worker(types={"envdump": "env", "echo": os.path.join(harness.JOBS_DIR,
                                                                          "echo.sh")})
        jid = post_json(s, "/jobs", {"type": "envdump"}, W1).json()["id"]
        harness.wait_until(lambda: s.request("GET", "/jobs/" + jid, headers=bearer(R1))
                           .json()["status"] == "done", 20, "the envdump job to finish")
        r = s.request("GET", "/jobs/%s/logs?limit=1000" % jid, headers=bearer(R1))
        lines = [e["line"] for e in r.json()["entries"]]
        check(any(ln.startswith("JOBGATE_JOB_ID=") for ln in lines), "the job printed its env",
              lines[:5])
        for sec in secrets + ["REDIS_URL=", "JOBGATE_API_TOKENS", "JOBGATE_READ_TOKENS"]:
            check(not any(sec in ln for ln in lines), "no %s in the job's environment" % sec[:12])
        # requests that carry tokens every way, right and wrong, and fail in every way; R2 is
        # the browser's token, sent as ?access_token= on the logs route, whose stream it leaves
        q = urllib.parse.quote
        s.request("GET", "/jobs/%s/logs?access_token=%s" % (jid, q(R2)))
        queued = post_json(s, "/jobs", {"type": "echo", "delay": 600}, W2).json()["id"]
        u = urllib.parse.urlsplit(s.base)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        c.request("GET", "%s/jobs/%s/logs?access_token=%s" % (u.path, queued, q(R2)),
                  headers={"Accept": "text/event-stream"})
        resp = c.getresponse()
        eq(resp.status, 200, "a stream with ?access_token=")
        resp.readline()
        time.sleep(0.3)
        c.close()   # the client leaves its stream
        sse_open(s, "/jobs/%s/logs?access_token=%s&after=zz" % (jid, q(WRONG)))
        s.request("GET", "/jobs/%s?access_token=%s" % (jid, q(W2)))
        post_json(s, "/jobs", {"type": "echo"}, WRONG, {"Idempotency-Key": "k"})
        post_json(s, "/jobs", "{bad", W2, {"Idempotency-Key": "k"})
        post_json(s, "/jobs", {"type": "echo"}, W2, {"Idempotency-Key": "k"})
        s.request("GET", "/cache/" + KEY, headers=bearer(WRONG))
        s.request("PUT", "/cache/" + KEY, body="[1]", headers=dict(bearer(W1), **{
            "Content-Type": "application/json"}))
        checks = []
        for prog in ("submit", "status", "logs", "cache", "worker"):
            extra = ["--type", "echo=/bin/true"] if prog == "worker" else []
            p = subprocess.run([harness.binary(prog)] + extra + ["--check"], env=s.program_env(),
                               capture_output=True, timeout=30)
            out = (p.stdout + p.stderr).decode("utf-8", "replace")
            eq(p.returncode, 0, "jobgate-%s --check exit status (%s)" % (prog, out[-300:]))
            check("***" in out, "jobgate-%s --check shows masked secrets" % prog, out)
            checks.append(out)
        w.stop()
        time.sleep(0.3)   # the front writes its log lines after the answers
        programs = "\n".join(p.log() for p in s._all_procs())
        with open(os.path.join(s.dir, "%s-access.log" % s.front)) as f:
            access = f.read()
        with open(s.front_error_log) as f:
            errors = f.read()
        check("/logs?..." in access, "the access log holds the logs requests, query hidden",
              access[-500:])
    for text, what, hidden in ((programs, "the programs' and the worker's logs", secrets),
                               ("\n".join(checks), "--check output", secrets),
                               (access, "%s's access log (format jobgate)" % s.front, secrets),
                               # nginx writes the request line, query and all, of a stream a
                               # client left (at level info) or an upstream error: a token sent
                               # as ?access_token= can be there (README, "Access")
                               (errors, "%s's error log" % s.front,
                                [x for x in secrets if x != R2])):
        for sec in hidden:
            i = text.find(sec)
            check(i < 0, "%s hold no secret" % what, text[max(0, i - 300):i + 100])
