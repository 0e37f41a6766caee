"""What every web program does, whatever its routes (contract sections 1, 2, 8, 11): routing,
common headers, the error shape, command-line flags, secrets, SIGTERM, plain CGI, --socket,
Redis outages, several instances, configuration by environment, the shipped nginx config."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import check, eq, expect_error, stack

# HTTP suite: the tests through the front run behind nginx and again behind Apache (run.py);
# those straight to the programs are marked front_independent
FRONTS = harness.FRONTS

PROGRAMS = harness.DEFAULT_PROGRAMS   # every web program the default stack runs
PASSWORD = "s3cret-Pw-7f3a9c"


def _run(program, *args, env=None, timeout=20):
    e = harness._base_env()
    e.update(env or {})
    p = subprocess.run([harness.binary(program)] + list(args), env=e, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def _wait_port(port, timeout=10):
    def up():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    harness.wait_until(up, timeout, "port %d listening" % port)


# ---- Routing ----------------------------------------------------------------------------------

def test_unknown_routes_are_404_json():
    s = stack()
    for m, path in (("GET", "/nope"), ("GET", "/"), ("GET", "/jobs/a/b/c"), ("POST", "/job"),
                    ("GET", "/jobs/x/unknown"), ("DELETE", "/nope"), ("GET", "/cache")):
        with s.unchanged("%s %s" % (m, path)):
            r = s.request(m, path)
            expect_error(r, 404, "not_found")


@harness.front_independent
def test_routes_of_other_programs_are_404():
    s = stack()
    job = s.submit(type="echo")
    jid = job["id"]
    cases = (("submit", "GET", "/api/jobs/" + jid), ("submit", "HEAD", "/api/jobs/" + jid),
             ("submit", "GET", "/api/health"), ("submit", "GET", "/api/jobs/%s/logs" % jid),
             ("submit", "POST", "/api/jobs/%s/retry" % jid), ("submit", "GET", "/api/cache/" + "a" * 64),
             ("status", "POST", "/api/jobs"), ("status", "POST", "/api/jobs/%s/cancel" % jid),
             ("status", "GET", "/api/jobs/%s/logs" % jid), ("status", "GET", "/api/metrics"),
             ("status", "POST", "/api/cache/key"))
    for prog, m, uri in cases:
        with s.unchanged("%s: %s %s" % (prog, m, uri)):
            r = s.fcgi(prog, m, uri, body=b'{"type":"echo"}' if m == "POST" else b"",
                       headers={"Content-Type": "application/json"} if m == "POST" else None)
            check(r.status == 404, "jobgate-%s: %s %s is another program's route: 404"
                  % (prog, m, uri), r)
            if m != "HEAD":
                expect_error(r, 404, "not_found")
    eq(s.job(jid)["status"], "queued", "the job after requests to the wrong programs")


@harness.front_independent
def test_paths_outside_the_mount_prefix_are_404():
    s = stack()
    for prog in PROGRAMS:
        r = s.fcgi(prog, "GET", "/other/jobs/abc")
        expect_error(r, 404, "not_found")


@harness.front_independent
def test_wrong_methods_answer_405_with_allow_from_each_program():
    s = stack()
    jid = s.submit(type="echo")["id"]
    for prog, m, uri, must in (("submit", "PUT", "/api/jobs", "POST"),
                               ("submit", "GET", "/api/jobs/%s/cancel" % jid, "POST"),
                               ("status", "PATCH", "/api/jobs/" + jid, "GET"),
                               ("status", "POST", "/api/jobs/" + jid, "GET")):
        with s.unchanged("%s %s %s" % (prog, m, uri)):
            r = s.fcgi(prog, m, uri)
            expect_error(r, 405, "method_not_allowed")
            allow = [a.strip() for a in r.headers.get("Allow", "").split(",")]
            check(must in allow, "jobgate-%s %s %s: Allow lists %s" % (prog, m, uri, must),
                  r.headers.get("Allow"))


def test_every_response_carries_nosniff():
    s = stack()
    job = s.submit(type="echo")
    jid = job["id"]
    answers = [
        s.request("POST", "/jobs", json={"type": "echo"}),
        s.request("GET", "/jobs/" + jid),
        s.request("HEAD", "/jobs/" + jid),
        s.request("GET", "/jobs/" + jid, headers={"If-None-Match": '"%d"' % job["version"]}),
        s.request("GET", "/jobs/nope"),
        s.request("GET", "/nothing-here"),
        s.request("PUT", "/jobs"),
        s.request("POST", "/jobs", body="{", headers={"Content-Type": "application/json"}),
        s.request("POST", "/jobs", body="{}", headers={"Content-Type": "text/plain"}),
        s.request("POST", "/jobs", json={"type": "echo", "x": 1}),
        s.request("OPTIONS", "/jobs"),
        s.request("OPTIONS", "/jobs/" + jid),
    ]
    s.request("POST", "/jobs/%s/cancel" % jid)
    answers.append(s.request("POST", "/jobs/%s/cancel" % jid))   # 409
    for r in answers:
        eq(r.headers.get("X-Content-Type-Options"), "nosniff",
           "X-Content-Type-Options of %s (%d)" % (r.what, r.status))


def test_job_answers_and_their_errors_are_no_store():
    s = stack()
    job = s.submit(type="echo")
    jid = job["id"]
    for r in (s.request("GET", "/jobs/" + jid), s.request("HEAD", "/jobs/" + jid),
              s.request("GET", "/jobs/" + jid, headers={"If-None-Match": '"%d"' % job["version"]}),
              s.request("GET", "/jobs/unknownunknownunknown"),
              s.request("POST", "/jobs", json={"type": "echo"}),
              s.request("POST", "/jobs/%s/cancel" % jid)):
        eq(r.headers.get("Cache-Control"), "no-store", "Cache-Control of %s (%d)" % (r.what, r.status))


def test_http_1_0_clients_are_served():
    s = stack()
    jid = s.submit(type="echo")["id"]
    raw = s.raw_request(("GET /api/jobs/%s HTTP/1.0\r\n\r\n" % jid).encode())
    r = harness.parse_http_response(raw, "HTTP/1.0 GET")
    eq(r.status, 200, "HTTP/1.0 GET of a job")
    eq(r.json()["id"], jid, "id in the answer")


# ---- CORS ---------------------------------------------------------------------------------------

def test_cors_preflight_and_headers_for_a_listed_origin():
    origin = "https://app.example"
    with harness.Stack(env={"JOBGATE_CORS_ORIGINS": "https://other.example, " + origin},
                       name="cors") as s:
        r = s.request("OPTIONS", "/jobs", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key"})
        check(r.status in (200, 204), "preflight OPTIONS /jobs: 200 or 204", r)
        eq(r.headers.get("Access-Control-Allow-Origin"), origin, "Allow-Origin of the preflight")
        methods = r.headers.get("Access-Control-Allow-Methods", "").upper()
        check("POST" in methods, "preflight allows POST", methods)
        hdrs = r.headers.get("Access-Control-Allow-Headers", "").lower()
        for h in ("content-type", "idempotency-key"):
            check(h in hdrs or hdrs.strip() == "*", "preflight allows the header %s" % h, hdrs)
        r = s.request("OPTIONS", "/jobs/abc", headers={
            "Origin": origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "if-none-match"})
        check(r.status in (200, 204), "preflight OPTIONS /jobs/{id}", r)
        check("if-none-match" in r.headers.get("Access-Control-Allow-Headers", "").lower()
              or r.headers.get("Access-Control-Allow-Headers", "").strip() == "*",
              "preflight allows If-None-Match", r.headers.get("Access-Control-Allow-Headers"))
        r = s.request("POST", "/jobs", json={"type": "echo"}, headers={"Origin": origin})
        eq(r.status, 202, "POST with an Origin")
        eq(r.headers.get("Access-Control-Allow-Origin"), origin, "Allow-Origin of the POST")
        expose = r.headers.get("Access-Control-Expose-Headers", "").lower()
        check("location" in expose, "Location exposed to the browser", expose)
        jid = r.json()["id"]
        r = s.request("GET", "/jobs/" + jid, headers={"Origin": origin})
        expose = r.headers.get("Access-Control-Expose-Headers", "").lower()
        check("etag" in expose, "ETag exposed to the browser (long polls need it)", expose)
        r = s.request("GET", "/jobs/" + jid, headers={"Origin": "https://evil.example"})
        eq(r.status, 200, "GET from an unlisted origin")
        eq(r.headers.get("Access-Control-Allow-Origin"), None, "no Allow-Origin for an unlisted origin")


def test_cors_star_allows_any_origin():
    with harness.Stack(env={"JOBGATE_CORS_ORIGINS": "*"}, name="corsstar") as s:
        r = s.request("POST", "/jobs", json={"type": "echo"}, headers={"Origin": "https://x.example"})
        eq(r.status, 202, "POST")
        check(r.headers.get("Access-Control-Allow-Origin") in ("*", "https://x.example"),
              "Allow-Origin with JOBGATE_CORS_ORIGINS=*", r.headers.get("Access-Control-Allow-Origin"))


def test_no_cors_headers_by_default():
    s = stack()
    r = s.request("POST", "/jobs", json={"type": "echo"}, headers={"Origin": "https://x.example"})
    eq(r.status, 202, "POST with an Origin")
    eq(r.headers.get("Access-Control-Allow-Origin"), None, "Allow-Origin without JOBGATE_CORS_ORIGINS")


# ---- Flags -------------------------------------------------------------------------------------

@harness.front_independent
def test_help_lists_the_flags():
    for prog in PROGRAMS:
        rc, out, err = _run(prog, "--help")
        eq(rc, 0, "jobgate-%s --help exit code" % prog)
        text = out + err
        for flag in ("--threads", "--grace", "--socket", "--check", "--version", "--max-streams",
                     "--read-timeout", "FCGI_WEB_SERVER_ADDRS"):
            check(flag in text, "jobgate-%s --help mentions %s" % (prog, flag), text[:800])


@harness.front_independent
def test_version_prints_name_and_version():
    for prog in PROGRAMS:
        rc, out, err = _run(prog, "--version")
        eq(rc, 0, "jobgate-%s --version exit code" % prog)
        check(re.search(r"jobgate-%s\S*\s+\S*\d+\.\d+\.\d+" % prog, out),
              "jobgate-%s --version prints its name and version" % prog, out)


@harness.front_independent
def test_unknown_flag_fails_with_the_program_name():
    for prog in PROGRAMS:
        rc, out, err = _run(prog, "--no-such-flag")
        check(rc != 0, "jobgate-%s --no-such-flag exits non-zero" % prog, rc)
        check(err.startswith("jobgate-%s" % prog), "the error starts with the program's name", err)


@harness.front_independent
def test_bad_flag_values_are_refused():
    for args in (("--threads", "0"), ("--threads", "abc"), ("--grace", "-1"),
                 ("--max-streams", "x"), ("--read-timeout", "0"), ("--read-timeout", "x")):
        rc, out, err = _run("status", *args, "--check")
        check(rc != 0, "jobgate-status %s exits non-zero" % " ".join(args), (rc, out, err))
        check(err.startswith("jobgate-status"), "the error starts with the program's name", err)


@harness.front_independent
def test_check_prints_config_and_exits_0_when_redis_answers():
    s = stack()
    for prog in PROGRAMS:
        rc, out, err = _run(prog, "--check", env={"REDIS_URL": s.redis_url})
        eq(rc, 0, "jobgate-%s --check exit code with Redis up (stderr %r)" % (prog, err[-300:]))
        check(s.redis_address in out, "--check prints the Redis URL in effect", out)
        want = min(8, max(2, len(os.sched_getaffinity(0)))) if prog in ("status", "submit") else 8
        check(re.search(r"^threads=%d$" % want, out, re.M),
              "--check prints the default thread count (%d)" % want, out)


@harness.front_independent
def test_check_exits_1_when_redis_is_unreachable():
    port = harness.free_port()
    for prog in PROGRAMS:
        rc, out, err = _run(prog, "--check", env={"REDIS_URL": "redis://127.0.0.1:%d/0" % port})
        eq(rc, 1, "jobgate-%s --check exit code with nothing on the Redis port" % prog)


@harness.front_independent
def test_check_refuses_a_bad_setting_by_name():
    rc, out, err = _run("submit", "--check", env={"JOBGATE_MAX_BODY": "lots"})
    check(rc != 0, "--check with JOBGATE_MAX_BODY=lots exits non-zero", rc)
    check("JOBGATE_MAX_BODY" in out + err, "the message names JOBGATE_MAX_BODY", out + err)
    rc, out, err = _run("submit", "--check", env={"REDIS_URL": "mysql://x"})
    check(rc != 0, "--check with a bad REDIS_URL exits non-zero", rc)
    check("REDIS_URL" in out + err, "the message names REDIS_URL", out + err)


@harness.single_redis_only("its Redis has a password; the test cluster has none "
                           "(cluster.check_shows_the_cluster_seeds_without_the_password)")
@harness.front_independent
def test_check_masks_every_secret():
    with harness.Stack(redis_password=PASSWORD, name="secret") as s:
        env = {"REDIS_URL": s.redis_url, "JOBGATE_API_TOKENS": "tokA-Secret-111,tokB-Secret-222",
               "JOBGATE_READ_TOKENS": "read-Secret-333"}
        for prog in PROGRAMS:
            rc, out, err = _run(prog, "--check", env=env)
            eq(rc, 0, "jobgate-%s --check with a password-protected Redis (stderr %r)"
               % (prog, err[-300:]))
            for secret in (PASSWORD, "tokA-Secret-111", "tokB-Secret-222", "read-Secret-333"):
                check(secret not in out + err, "--check output hides %s" % secret, out + err)
            check("127.0.0.1:%d" % s.redis_port in out, "--check still shows Redis' address", out)


@harness.single_redis_only("its Redis has a password; the test cluster has none "
                           "(cluster.check_shows_the_cluster_seeds_without_the_password)")
@harness.front_independent
def test_a_wrong_redis_password_is_refused_without_printing_it():
    with harness.Stack(redis_password=PASSWORD, name="wrongpw") as s:
        wrong = "Wr0ng-Pass-51c3"
        for url in ("redis://:%s@127.0.0.1:%d/0" % (wrong, s.redis_port),
                    "redis://appuser:%s@127.0.0.1:%d/0" % (wrong, s.redis_port)):
            for prog in PROGRAMS:
                rc, out, err = _run(prog, "--check", env={"REDIS_URL": url})
                eq(rc, 1, "jobgate-%s --check with a wrong Redis password" % prog)
                check(wrong not in out + err, "the wrong password is not printed", out + err)
                check("appuser" in out or ":%d" % s.redis_port in out,
                      "--check still shows where it connects", out)


@harness.single_redis_only("a password, db 3 and a restart of the one Redis; the test cluster "
                           "has no password and db 0 only "
                           "(cluster.check_shows_the_cluster_seeds_without_the_password)")
@harness.front_independent
def test_redis_password_never_appears_in_logs():
    with harness.Stack(redis_password=PASSWORD, redis_db=3, name="pwlogs") as s:
        job = s.submit(type="echo")
        eq(s.job(job["id"])["id"], job["id"], "GET works with a password-protected Redis")
        check(any(job["id"] in k for k in s.redis("KEYS", "*")),
              "the job's keys are in db 3 (REDIS_URL .../3)", s.redis("KEYS", "*"))
        # a reconnect must AUTH and SELECT again
        s.restart_redis()
        harness.wait_until(lambda: s.request("POST", "/jobs", json={"type": "echo"}).status == 202,
                           15, "submits to work again after Redis restarted")
        jid = s.submit(type="echo")["id"]
        eq(s.job(jid)["status"], "queued", "GET after the reconnect")
        check(any(jid in k for k in s.redis("KEYS", "*")), "new keys in db 3 after the reconnect",
              s.redis("KEYS", "*"))
        bad = harness.Redis(unix=s.redis_sock, password=PASSWORD, db=0)
        eq(bad.call("DBSIZE"), 0, "nothing written to db 0")
        bad.close()
        logs = s.all_logs()
    check(PASSWORD not in logs, "no program log holds the Redis password", logs[-2000:])


# ---- Stopping --------------------------------------------------------------------------------------

@harness.front_independent
def test_sigterm_while_idle_exits_within_grace():
    with harness.Stack(grace=2, name="idle") as s:
        s.submit(type="echo")
        for prog in PROGRAMS:
            p = s.program_procs(prog)[0]
            rc, took, killed = p.stop(signal.SIGTERM, 15)
            check(not killed, "jobgate-%s exits after SIGTERM while idle" % prog, took)
            eq(rc, 0, "jobgate-%s exit code after SIGTERM" % prog)
            check(took <= 2 + 1.5, "jobgate-%s exits within --grace 2 s (+ slack)" % prog, took)


def test_sigterm_ends_a_parked_long_poll_and_exits():
    with harness.Stack(grace=3, name="termpoll") as s:
        job = s.submit(type="echo")
        out = {}

        def poll():
            t0 = time.monotonic()
            try:
                out["r"] = s.request("GET", "/jobs/%s?wait=40" % job["id"],
                                     headers={"If-None-Match": '"%d"' % job["version"]}, timeout=60)
            except Exception as e:
                out["e"] = e
            out["t"] = time.monotonic() - t0
        t = threading.Thread(target=poll, daemon=True)
        t.start()
        time.sleep(0.8)
        p = s.program_procs("status")[0]
        rc, took, killed = p.stop(signal.SIGTERM, 20)
        t.join(30)
        check(not killed, "jobgate-status exits after SIGTERM with a long poll parked", took)
        eq(rc, 0, "exit code")
        check(took <= 3 + 1.5, "it exits within --grace 3 s (+ slack)", took)
        check("r" in out, "the long poll got an answer", out)
        check(out["r"].status in (200, 304, 503),
              "the long poll got a real answer (200/304/503, not nginx's 502)", out["r"])
        check(out["t"] < 10, "the long poll ended with the program, not after its wait", out["t"])


def test_sigterm_under_load_answers_every_request_and_exits_0():
    with harness.Stack(grace=5, name="termload") as s:
        job = s.submit(type="echo")
        results, errors = [], []

        def one():
            try:
                results.append(s.request("POST", "/jobs", json={"type": "echo"}, timeout=30))
            except Exception as e:  # reported below
                errors.append(e)
        ts = [threading.Thread(target=one, daemon=True) for _ in range(30)]
        p = s.program_procs("submit")[0]
        for i, t in enumerate(ts):
            t.start()
            if i == 10:
                # on a busy machine the first requests can still be on their way: SIGTERM once
                # one is answered, while the others are in flight
                harness.wait_until(lambda: results or errors, 10, "a first answer")
                p.signal(signal.SIGTERM)
        for t in ts:
            t.join(30)
        rc = p.wait(15)
        eq(rc, 0, "jobgate-submit exit code after SIGTERM under load")
        eq(errors, [], "requests that got no HTTP answer")
        bad = [r for r in results if r.status not in (202, 503)]
        eq(bad, [], "answers other than 202 (taken) or 503 (nginx: program gone)")
        check(any(r.status == 202 for r in results), "some requests were served", len(results))
        eq(s.job(job["id"])["id"], job["id"], "status still serves")


# ---- Plain CGI ---------------------------------------------------------------------------------

@harness.front_independent
def test_cgi_status_answers_a_job():
    s = stack()
    job = s.submit(type="echo")
    r, err, rc = harness.cgi("status", "GET", "/api/jobs/" + job["id"], env={"REDIS_URL": s.redis_url})
    eq(rc, 0, "exit code of the CGI run (stderr %r)" % err[-300:])
    eq(r.status, 200, "CGI GET /jobs/{id}")
    eq(r.json(), s.job(job["id"]), "the job from CGI vs FastCGI")
    eq(r.headers.get("ETag"), '"%d"' % job["version"], "ETag over CGI")
    eq(r.headers.get("X-Content-Type-Options"), "nosniff", "nosniff over CGI")


@harness.front_independent
def test_cgi_submit_reads_the_body_from_stdin():
    s = stack()
    r, err, rc = harness.cgi("submit", "POST", "/api/jobs", body='{"type":"echo","priority":5}',
                             headers={"Content-Type": "application/json"},
                             env={"REDIS_URL": s.redis_url})
    eq(rc, 0, "exit code of the CGI run (stderr %r)" % err[-300:])
    eq(r.status, 202, "CGI POST /jobs")
    job = r.json()
    eq(r.headers.get("Location"), "/api/jobs/" + job["id"], "Location over CGI")
    eq(s.job(job["id"])["priority"], 5, "the job submitted over CGI, seen over HTTP")


@harness.front_independent
def test_cgi_errors_have_the_same_shape():
    s = stack()
    env = {"REDIS_URL": s.redis_url}
    with s.unchanged("CGI errors"):
        r, _, _ = harness.cgi("status", "GET", "/api/jobs/..", env=env)
        expect_error(r, 404, "not_found")
        r, _, _ = harness.cgi("submit", "POST", "/api/jobs", body="{", env=env,
                              headers={"Content-Type": "application/json"})
        expect_error(r, 400, "invalid_json")
        r, _, _ = harness.cgi("submit", "DELETE", "/api/jobs", env=env)
        expect_error(r, 405, "method_not_allowed")


@harness.front_independent
def test_cgi_long_poll_waits_then_304():
    s = stack()
    job = s.submit(type="echo")
    t0 = time.monotonic()
    r, err, rc = harness.cgi("status", "GET", "/api/jobs/%s?wait=1" % job["id"],
                             headers={"If-None-Match": '"%d"' % job["version"]},
                             env={"REDIS_URL": s.redis_url})
    took = time.monotonic() - t0
    eq(r.status, 304, "CGI long poll without a change (stderr %r)" % err[-300:])
    check(took >= 0.8, "the CGI long poll waited about 1 s", took)


@harness.front_independent
def test_cgi_with_redis_down_is_503():
    port = harness.free_port()
    r, err, rc = harness.cgi("status", "GET", "/api/jobs/37a8eec1.AAAAAAAAAAAAAAAAAAAAAA",
                             env={"REDIS_URL": "redis://127.0.0.1:%d/0" % port})
    expect_error(r, 503, "unavailable")
    eq(r.headers.get("Retry-After"), "1", "Retry-After over CGI")


# ---- --socket ------------------------------------------------------------------------------------

@harness.front_independent
def test_socket_host_port_mode_serves_fastcgi():
    s = stack()
    port = harness.free_port()
    proc = harness.Proc("status-tcp", [harness.binary("status"), "--socket", "127.0.0.1:%d" % port,
                                       "--threads", "2", "--grace", "2"],
                        s.program_env(), os.path.join(s.dir, "status-tcp.log"))
    s.procs.setdefault("status-tcp", []).append(proc)
    _wait_port(port)
    job = s.submit(type="echo")
    for _ in range(3):   # several connections in a row
        r = harness.fcgi_request(("127.0.0.1", port),
                                 harness.fcgi_params("GET", "/api/jobs/" + job["id"]),
                                 what="fcgi over TCP")
        eq(r.status, 200, "GET over --socket 127.0.0.1:PORT")
        eq(r.json()["id"], job["id"], "id")
    rc, took, killed = proc.stop(signal.SIGTERM, 10)
    check(not killed and rc == 0, "the --socket program exits 0 on SIGTERM", (rc, took))


@harness.front_independent
def test_socket_unix_path_mode_serves_fastcgi():
    s = stack()
    path = os.path.join(s.dir, "own.sock")
    proc = harness.Proc("submit-own", [harness.binary("submit"), "--socket", path, "--threads", "2",
                                       "--grace", "2"],
                        s.program_env(), os.path.join(s.dir, "submit-own.log"))
    s.procs.setdefault("submit-own", []).append(proc)
    harness.wait_until(lambda: harness.accepts(path), 10, "the program's own socket")
    body = b'{"type":"echo"}'
    r = harness.fcgi_request(path, harness.fcgi_params("POST", "/api/jobs", body,
                                                       {"Content-Type": "application/json"}),
                             body, what="fcgi over own unix socket")
    eq(r.status, 202, "POST over --socket PATH")
    rc, took, killed = proc.stop(signal.SIGTERM, 10)
    check(not killed and rc == 0, "exits 0 on SIGTERM", (rc, took))


@harness.front_independent
def test_fastcgi_keep_conn_serves_several_requests_on_one_connection():
    s = stack()
    job = s.submit(type="echo")
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(10)
    c.connect(s.sock("status"))
    with c:
        for i in range(3):
            params = harness.fcgi_params("GET", "/api/jobs/" + job["id"])
            pairs = b"".join(harness._fcgi_len(len(k)) + harness._fcgi_len(len(str(v)))
                             + k.encode() + str(v).encode() for k, v in params.items())
            msg = (harness._fcgi_record(harness.FCGI_BEGIN, bytes([0, 1, 1, 0, 0, 0, 0, 0]), i + 1)
                   + harness._fcgi_record(harness.FCGI_PARAMS, pairs, i + 1)
                   + harness._fcgi_record(harness.FCGI_PARAMS, b"", i + 1)
                   + harness._fcgi_record(harness.FCGI_STDIN, b"", i + 1))
            c.sendall(msg)
            out, buf, ended = b"", b"", False
            while not ended:
                d = c.recv(65536)
                check(d, "connection kept open for request %d (FCGI_KEEP_CONN)" % (i + 1))
                buf += d
                while len(buf) >= 8:
                    import struct
                    _, t, _, clen, plen, _ = struct.unpack("!BBHHBB", buf[:8])
                    if len(buf) < 8 + clen + plen:
                        break
                    if t == harness.FCGI_STDOUT:
                        out += buf[8:8 + clen]
                    elif t == harness.FCGI_END:
                        ended = True
                    buf = buf[8 + clen + plen:]
            r = harness.parse_cgi_response(out, "keep-conn request %d" % (i + 1))
            eq(r.status, 200, "request %d on one kept connection" % (i + 1))


# ---- Redis outages and several instances -----------------------------------------------------------

@harness.single_redis_only("stops the one Redis; on a cluster a master is killed instead "
                           "(cluster.a_master_killed_is_replaced_by_its_replica_with_no_restart)")
def test_redis_down_is_503_unavailable_then_recovers():
    with harness.Stack(name="redisdown", redis_via="tcp") as s:
        job = s.submit(type="echo")
        pids = {p: s.program_pids(p) for p in PROGRAMS}
        s.stop_redis()
        for m, path, body in (("GET", "/jobs/" + job["id"], None),
                              ("POST", "/jobs", {"type": "echo"}),
                              ("POST", "/jobs/%s/cancel" % job["id"], None)):
            t0 = time.monotonic()
            r = s.request(m, path, json=body)
            expect_error(r, 503, "unavailable")
            eq(r.headers.get("Retry-After"), "1", "Retry-After of %s %s" % (m, path))
            check(time.monotonic() - t0 < 10, "the 503 comes quickly", time.monotonic() - t0)
        r = s.request("GET", "/jobs/" + job["id"] + "?wait=5",
                      headers={"If-None-Match": '"%d"' % job["version"]})
        expect_error(r, 503, "unavailable")
        eq({p: s.program_pids(p) for p in PROGRAMS}, pids, "the programs kept running")
        s.start_redis()
        harness.wait_until(lambda: s.request("POST", "/jobs", json={"type": "echo"}).status == 202,
                           15, "submit to work again after Redis came back")
        harness.wait_until(lambda: s.request("GET", "/jobs/nosuchjob").status == 404, 15,
                           "status to work again after Redis came back")
        serves_again_after_an_outage(s, pids, "Redis restarted")


def serves_again_after_an_outage(s, pids, what):
    """After Redis came back (what: how it was away): once every thread's reconnect backoff has
    run out, no submit or status request fails, whichever thread (and its connection from
    before) takes it; the programs are the same processes (pids: name -> pids); and the
    subscriber thread is back too: a change wakes a long poll."""
    time.sleep(2.5)   # every thread's reconnect backoff (at most 2 s) has run out
    j2 = None
    for i in range(12):
        r = s.request("POST", "/jobs", json={"type": "echo"})
        eq(r.status, 202, "submit %d after %s (%r)" % (i + 1, what, r.body[:100]))
        j2 = r.json()
        r = s.request("GET", "/jobs/" + j2["id"])
        eq(r.status, 200, "GET %d after %s (%r)" % (i + 1, what, r.body[:100]))
    eq({p: s.program_pids(p) for p in pids}, pids, "same processes after %s" % what)
    time.sleep(2.5)   # let the subscriber's backoff run out
    t0 = time.monotonic()
    poll = harness.Bg(lambda: s.request("GET", "/jobs/%s?wait=30" % j2["id"], timeout=60,
                                        headers={"If-None-Match": '"%d"' % j2["version"]}))
    time.sleep(0.5)
    s.request("POST", "/jobs/%s/cancel" % j2["id"])
    eq(poll.result(40).status, 200, "long poll after %s, woken by a change" % what)
    check(poll.ended - t0 < 20, "woken by the change, not by its wait running out",
          poll.ended - t0)


@harness.single_redis_only("restarts the one Redis; on a cluster a master is killed instead "
                           "(cluster.a_master_killed_is_replaced_by_its_replica_with_no_restart)")
def test_redis_restart_during_a_long_poll_does_not_lose_the_waiter():
    with harness.Stack(name="pollrestart", redis_via="tcp") as s:
        job = s.submit(type="echo")
        out = {}

        def poll():
            out["r"] = s.request("GET", "/jobs/%s?wait=6" % job["id"],
                                 headers={"If-None-Match": '"%d"' % job["version"]}, timeout=60)
        t = threading.Thread(target=poll, daemon=True)
        t.start()
        time.sleep(0.5)
        s.restart_redis()
        t.join(40)
        check("r" in out, "the long poll answered")
        check(out["r"].status in (200, 304, 404, 503),
              "the long poll got a real answer (the job's data is gone with the restart)", out["r"])


@harness.front_independent
def test_two_status_instances_give_the_same_answers():
    s = stack()
    s.start_program("status", n=1)
    harness.wait_until(lambda: harness.accepts(s.sock("status", 1)), 10, "second status socket")
    job = s.submit(type="echo", payload={"k": "v"}, priority=3)
    a = s.request("GET", "/jobs/" + job["id"])
    b = s.fcgi("status", "GET", "/api/jobs/" + job["id"], n=1)
    eq((b.status, b.json(), b.headers.get("ETag")), (a.status, a.json(), a.headers.get("ETag")),
       "instance 2 vs instance 1")
    # a long poll on instance 2 is woken by a change made through instance 1's neighbours
    out = {}

    def poll():
        out["r"] = s.fcgi("status", "GET", "/api/jobs/%s?wait=30" % job["id"], n=1,
                          headers={"If-None-Match": '"%d"' % job["version"]}, timeout=60)
    t = threading.Thread(target=poll, daemon=True)
    t.start()
    time.sleep(0.5)
    s.request("POST", "/jobs/%s/cancel" % job["id"])
    t.join(30)
    check("r" in out, "the long poll on instance 2 answered")
    eq(out["r"].status, 200, "long poll on instance 2 after a cancel")
    eq(out["r"].json(), s.job(job["id"]), "instance 2's answer vs instance 1's")
    p = s.program_procs("status")[1]
    rc, _, killed = p.stop(signal.SIGTERM, 10)
    check(not killed and rc == 0, "second instance exits 0", rc)


@harness.front_independent
def test_two_submit_instances_share_one_state():
    s = stack()
    s.start_program("submit", n=1)
    harness.wait_until(lambda: harness.accepts(s.sock("submit", 1)), 10, "second submit socket")
    body = b'{"type":"echo"}'
    r = s.fcgi("submit", "POST", "/api/jobs", body=body, n=1,
               headers={"Content-Type": "application/json"})
    eq(r.status, 202, "submit through instance 2")
    jid = r.json()["id"]
    eq(s.job(jid)["status"], "queued", "the job seen through nginx")
    eq(s.request("POST", "/jobs/%s/cancel" % jid).status, 200, "cancel through instance 1")
    r = s.fcgi("submit", "POST", "/api/jobs/%s/cancel" % jid, n=1)
    expect_error(r, 409, "conflict")
    s.program_procs("submit")[1].stop(signal.SIGTERM, 10)


# ---- Configuration --------------------------------------------------------------------------------

@harness.front_independent
def test_key_prefix_puts_every_key_under_it():
    with harness.Stack(env={"JOBGATE_KEY_PREFIX": "myapp"}, name="keyprefix") as s:
        job = s.submit(type="echo", delay=5)
        s.request("POST", "/jobs/%s/cancel" % s.submit(type="echo")["id"])
        keys = s.redis("KEYS", "*")
        check(keys, "keys were written", keys)
        bad = [k for k in keys if not k.startswith("myapp:")]
        eq(bad, [], "keys not under JOBGATE_KEY_PREFIX=myapp")
        eq(s.job(job["id"])["id"], job["id"], "GET works with the prefix")


@harness.single_redis_only("a unix socket URL with ?db=5; a cluster is reached over TCP and has "
                           "db 0 only")
@harness.front_independent
def test_unix_socket_redis_url_selects_its_db():
    with harness.Stack(redis_db=5, name="unixdb") as s:
        check(s.redis_url.startswith("unix://") and s.redis_url.endswith("?db=5"),
              "the stack uses a unix:// URL with ?db=5", s.redis_url)
        job = s.submit(type="echo")
        check(any(job["id"] in k for k in s.redis("KEYS", "*")), "the job's keys are in db 5",
              s.redis("KEYS", "*"))
        other = harness.Redis(unix=s.redis_sock, db=0)
        eq(other.call("DBSIZE"), 0, "keys in db 0")
        other.close()


@harness.front_independent
def test_mount_prefix_moves_the_routes():
    s = stack()
    s.start_program("submit", n=2, env={"JOBGATE_PREFIX": "/jg/v1"})
    s.start_program("status", n=2, env={"JOBGATE_PREFIX": "/jg/v1"})
    for p in ("submit", "status"):
        harness.wait_until(lambda p=p: harness.accepts(s.sock(p, 2)), 10, "socket")
    body = b'{"type":"echo"}'
    r = s.fcgi("submit", "POST", "/jg/v1/jobs", body=body, n=2,
               headers={"Content-Type": "application/json"})
    eq(r.status, 202, "POST /jg/v1/jobs with JOBGATE_PREFIX=/jg/v1")
    jid = r.json()["id"]
    eq(r.headers.get("Location"), "/jg/v1/jobs/" + jid, "Location under the prefix")
    eq(s.fcgi("status", "GET", "/jg/v1/jobs/" + jid, n=2).status, 200, "GET under the prefix")
    with s.unchanged("POST /api/jobs to a /jg/v1 program"):
        r = s.fcgi("submit", "POST", "/api/jobs", body=body, n=2,
                   headers={"Content-Type": "application/json"})
        expect_error(r, 404, "not_found")
    for p in ("submit", "status"):
        s.program_procs(p)[-1].stop(signal.SIGTERM, 10)


@harness.front_independent
def test_logs_are_logfmt_lines_naming_the_program():
    s = stack()
    s.submit(type="echo")
    s.request("GET", "/jobs/nope")
    pair = r'[A-Za-z_][A-Za-z0-9_.-]*=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)'
    line_re = re.compile(r"^%s(?: %s)*$" % (pair, pair))
    for prog in PROGRAMS:
        lines = [ln for ln in s.program_log(prog).splitlines() if ln and not ln.startswith("# ")]
        check(lines, "jobgate-%s logged something" % prog)
        for ln in lines:
            check(line_re.match(ln), "jobgate-%s log line is logfmt" % prog, ln)
            check("prog=jobgate-%s" % prog in ln, "log line names prog=jobgate-%s" % prog, ln)
            check(re.search(r"(^| )level=(debug|info|warn|error)( |$)", ln),
                  "log line has a level", ln)


# ---- The shipped nginx config ---------------------------------------------------------------------

@harness.only_front("nginx")
def test_nginx_config_is_valid_as_shipped():
    s = stack()
    conf = os.path.join(s.dir, "nginx.conf")
    p = subprocess.run(["nginx", "-t", "-p", s.dir + "/", "-c", conf, "-e",
                        os.path.join(s.dir, "nginx-t.log")], capture_output=True, timeout=20)
    eq(p.returncode, 0, "nginx -t of a server including nginx/jobgate.conf (%s)"
       % p.stderr.decode()[-500:])


@harness.only_front("apache")
def test_apache_config_is_valid_as_shipped():
    s = stack()
    conf = os.path.join(s.dir, "apache2.conf")
    p = subprocess.run(harness.apache_front.apache_argv(conf)[:1] + ["-t", "-f", conf],
                       capture_output=True, timeout=20)
    eq(p.returncode, 0, "apache2 -t of a VirtualHost including apache/jobgate.conf (%s)"
       % (p.stdout + p.stderr).decode()[-500:])


def test_a_program_that_is_not_running_is_a_json_503():
    with harness.Stack(programs=("submit",), name="nostatus") as s:
        jid = s.submit(type="echo")["id"]
        r = s.request("GET", "/jobs/" + jid)
        expect_error(r, 503, "unavailable")
        eq(r.headers.get("Retry-After"), "1", "Retry-After when the program is down")


def test_bodies_between_the_program_limit_and_nginx_limit_get_the_programs_413():
    s = stack()
    body = b'{"type":"echo","payload":"' + b"q" * (1536 * 1024) + b'"}'
    r = s.request("POST", "/jobs", body=body, headers={"Content-Type": "application/json"})
    expect_error(r, 413, "payload_too_large")


def test_bodies_above_the_fronts_limit_get_a_json_413_from_the_front():
    """Above nginx's client_max_body_size (Apache's LimitRequestBody), 2 MiB as shipped, the
    front answers before any program sees the body: in the contract's error shape too."""
    s = stack()
    body = b'{"type":"echo","payload":"' + b"q" * (3 * 1024 * 1024) + b'"}'
    r = s.request("POST", "/jobs", body=body, headers={"Content-Type": "application/json"})
    expect_error(r, 413, "payload_too_large")
    check(r.headers.get("Content-Type", "").startswith("application/json"),
          "expected a JSON Content-Type", r.headers.get("Content-Type"))
    eq(r.headers.get("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options")
    eq(s.request("GET", "/health").status, 200, "the front still answers after it")


# ---- make run ------------------------------------------------------------------------------------

@harness.single_redis_only("make run starts its own Redis; REDIS_CLUSTER=3 make run is "
                           "cluster.make_run_with_redis_cluster_3_serves_the_readme_examples_and_stops_everything")
def test_make_run_stack_serves_runs_jobs_and_stops_on_ctrl_c():
    import tempfile
    run_dir = tempfile.mkdtemp(prefix="jg-makerun-")
    os.chmod(run_dir, 0o755)    # Apache's children (www-data, when run as root) reach the sockets
    port = harness.free_port()
    env = dict(harness._base_env(), PORT=str(port), JOBGATE_RUN_DIR=run_dir, FRONT=harness.FRONT,
               JOBGATE_BUILD=os.path.relpath(harness.BUILD, harness.ROOT))
    out_path = os.path.join(run_dir, "stack.out")
    with open(out_path, "wb") as out:
        p = subprocess.Popen(["sh", os.path.join(harness.ROOT, "deploy", "run-stack.sh")],
                             env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, preexec_fn=harness._child_setup)

    def text():
        with open(out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def leftovers():
        left = []
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != os.getpid():
                try:
                    with open("/proc/%s/cmdline" % d, "rb") as f:
                        if run_dir.encode() in f.read():
                            left.append(int(d))
                except OSError:
                    pass
        return left
    try:
        harness.wait_until(lambda: "jobgate is running" in text() or p.poll() is not None, 30,
                           "run-stack.sh to print its URL")
        check(p.poll() is None, "run-stack.sh is running", text()[-2000:])
        check("http://127.0.0.1:%d/" % port in text(), "it prints the URL", text()[-1000:])
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        eq(r.status, 200, "GET / (deploy/www)")
        c.request("POST", "/api/jobs", body=b'{"type":"echo","payload":{"hi":1}}',
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        body = r.read()
        eq(r.status, 202, "POST /api/jobs on make run's stack")
        jid = harness.jsonlib.loads(body)["id"]

        def done():
            c.request("GET", "/api/jobs/" + jid)
            j = harness.jsonlib.loads(c.getresponse().read())
            return j if j["status"] in ("done", "failed") else None
        j = harness.wait_until(done, 30, "the demo worker to run the echo job")
        eq((j["status"], j["result"]), ("done", {"hi": 1}), "the echo job on make run's stack")
        c.close()
        os.killpg(p.pid, signal.SIGINT)     # Ctrl-C: the terminal signals the whole group
        rc = p.wait(30)
        eq(rc, 130, "run-stack.sh exit code after Ctrl-C")
        harness.wait_until(lambda: not leftovers(), 5, "every process of the stack to be gone")
        check(not [f for f in os.listdir(run_dir) if f.endswith(".sock")],
              "no sockets left", os.listdir(run_dir))
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        for pid in leftovers():
            os.kill(pid, signal.SIGKILL)
    logs = "".join(open(os.path.join(run_dir, f), errors="replace").read()
                   for f in os.listdir(run_dir) if f.endswith(".log"))
    hits = [x for x in harness.SAN_PATTERNS if x in logs]
    eq(hits, [], "sanitizer reports in make run's logs")
    import shutil
    shutil.rmtree(run_dir, ignore_errors=True)


# ---- FastCGI peers and timeouts (issue 9, finding 5) --------------------------------------------

def _own_program(s, name, args, env=None):
    """Starts program name with its own --socket (args), registered with the stack."""
    proc = harness.Proc(name + "-own", [harness.binary(name)] + list(args),
                        s.program_env(env), os.path.join(s.dir, "%s-own-%d.log"
                                                         % (name, time.monotonic_ns())))
    s.procs.setdefault(name + "-own", []).append(proc)
    return proc


def _closed_within(conn, seconds):
    """Waits for the program to close conn; returns the seconds it took, or None."""
    t0 = time.monotonic()
    conn.settimeout(seconds)
    try:
        while conn.recv(4096):
            pass
        return time.monotonic() - t0
    except socket.timeout:
        return None
    except OSError:
        return time.monotonic() - t0


def test_a_peer_that_sends_half_a_record_is_closed_after_read_timeout_and_holds_no_thread():
    s = stack()
    job = s.submit(type="echo")
    path = os.path.join(s.dir, "halfrec.sock")
    proc = _own_program(s, "status", ["--socket", path, "--threads", "2", "--grace", "2",
                                      "--read-timeout", "2"])
    harness.wait_until(lambda: harness.accepts(path), 10, "the program's own socket")
    begin = harness.fcgi_request_bytes(harness.fcgi_params("GET", "/api/jobs/" + job["id"]))
    stuck = []
    for _ in range(2):   # as many as the program has threads: each sends 4 bytes of a header
        c = harness.fcgi_connect(path, timeout=10)
        c.sendall(begin[:4])
        stuck.append(c)
    silent = harness.fcgi_connect(path, timeout=10)   # and one that sends nothing at all
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        r = harness.fcgi_request(path, harness.fcgi_params("GET", "/api/jobs/" + job["id"]),
                                 timeout=15)
        eq(r.status, 200, "a whole request while two half records are pending")
        check(time.monotonic() - t0 < 8, "answered once --read-timeout 2 closed them, not never",
              time.monotonic() - t0)
        for i, c in enumerate(stuck + [silent]):
            took = _closed_within(c, 8)
            check(took is not None, "connection %d closed by the program after --read-timeout"
                  % i, took)
        check("did not deliver its request in time" in proc.log(),
              "the log says why a connection was closed", proc.log()[-500:])
    finally:
        for c in stuck + [silent]:
            c.close()
    rc, took, killed = proc.stop(signal.SIGTERM, 10)
    check(not killed and rc == 0, "exits 0 on SIGTERM", (rc, took))


def test_a_tcp_socket_refuses_peers_not_in_fcgi_web_server_addrs():
    s = stack()
    job = s.submit(type="echo")
    port = harness.free_port()
    proc = _own_program(s, "status", ["--socket", "127.0.0.1:%d" % port, "--threads", "2",
                                      "--grace", "2"],
                        env={"FCGI_WEB_SERVER_ADDRS": "127.0.0.2"})
    _wait_port(port)
    params = harness.fcgi_params("GET", "/api/jobs/" + job["id"])
    c = socket.create_connection(("127.0.0.1", port), timeout=10)   # from 127.0.0.1
    try:
        c.sendall(harness.fcgi_request_bytes(params))
        data = b""
        with __import__("contextlib").suppress(OSError):
            while True:
                d = c.recv(65536)
                if not d:
                    break
                data += d
        eq(data, b"", "what a peer not in FCGI_WEB_SERVER_ADDRS gets (nothing: closed)")
    finally:
        c.close()
    c = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0))
    try:
        c.sendall(harness.fcgi_request_bytes(params))
        r = harness.fcgi_read_response(c, "fcgi from 127.0.0.2")
        eq(r.status, 200, "a request from 127.0.0.2, which FCGI_WEB_SERVER_ADDRS lists")
    finally:
        c.close()
    check("FCGI_WEB_SERVER_ADDRS" in proc.log(), "the refusal is logged", proc.log()[-500:])
    rc, took, killed = proc.stop(signal.SIGTERM, 10)
    check(not killed and rc == 0, "exits 0 on SIGTERM", (rc, took))


@harness.front_independent
def test_jobgate_status_and_submit_run_a_request_thread_per_cpu_by_default_the_others_eight():
    # jobgate-status and jobgate-submit batch the requests of a wake, and fewer threads make
    # bigger batches (server.h, jg_serve_threads); --threads still decides when given
    s = stack()
    job = s.submit(type="echo")
    cpus = min(8, max(2, len(os.sched_getaffinity(0))))
    for name, args, want in (("status", [], cpus), ("status", ["--threads", "3"], 3),
                             ("submit", [], cpus), ("cache", [], 8)):
        path = os.path.join(s.dir, "threads-%s-%d.sock" % (name, len(args)))
        proc = _own_program(s, name, ["--socket", path, "--grace", "2"] + args)
        harness.wait_until(lambda: harness.accepts(path), 10, "the program's own socket")
        harness.wait_until(lambda: "msg=serving" in proc.log(), 10, "the program's serving line")
        m = re.search(r"msg=serving threads=(\d+)", proc.log())
        eq(int(m.group(1)) if m else None, want,
           "request threads of jobgate-%s %s" % (name, " ".join(args) or "without --threads"))
        if name == "status":
            r = harness.fcgi_request(path, harness.fcgi_params("GET", "/api/jobs/" + job["id"]),
                                     timeout=15)
            eq(r.status, 200, "a GET served by jobgate-status %s" % " ".join(args))
        rc, took, killed = proc.stop(signal.SIGTERM, 10)
        check(not killed and rc == 0, "exits 0 on SIGTERM", (rc, took))
