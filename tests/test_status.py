"""GET/HEAD /jobs/{id} through nginx (contract section 4): the job object, ETag and
If-None-Match, long polls woken by changes, malformed ids, and a job's life with a real worker."""

import os
import socket
import threading
import time

import harness
from harness import JOB_FIELDS, RFC3339_MS, check, eq, expect_error, stack

# HTTP suite: runs behind nginx and again behind Apache (run.py)
FRONTS = harness.FRONTS


def _etag(job):
    return '"%d"' % job["version"]


class _Bg:
    """A request run in a background thread: .result() -> (Response, seconds taken)."""

    def __init__(self, s, method, path, headers=None, timeout=90, fcgi=None):
        self.out = None
        self.err = None
        self.t0 = time.monotonic()

        def run():
            try:
                if fcgi is not None:
                    r = s.fcgi(fcgi[0], method, "/api" + path, headers=headers, n=fcgi[1],
                               timeout=timeout)
                else:
                    r = s.request(method, path, headers=headers, timeout=timeout)
                self.out = (r, time.monotonic() - self.t0)
            except Exception as e:  # reported by result()
                self.err = e
        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def done(self):
        return not self.t.is_alive()

    def result(self, timeout=90):
        self.t.join(timeout)
        if self.t.is_alive():
            raise AssertionError("background request still running after %s s" % timeout)
        if self.err:
            raise AssertionError("background request failed: %r" % (self.err,))
        return self.out


# ---- The job object ------------------------------------------------------------------------------

def test_get_answers_200_with_the_job_etag_and_no_store():
    s = stack()
    job = s.submit(type="echo")
    r = s.request("GET", "/jobs/" + job["id"])
    eq(r.status, 200, "GET /jobs/{id}")
    eq(r.headers.get("Content-Type", "").split(";")[0], "application/json", "Content-Type")
    eq(r.headers.get("Cache-Control"), "no-store", "Cache-Control")
    eq(r.headers.get("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options")
    eq(r.headers.get("ETag"), _etag(job), "ETag")
    got = r.json()
    eq(sorted(got), sorted(JOB_FIELDS), "members of the job object")
    eq(got["id"], job["id"], "id")


def test_types_of_job_fields():
    s = stack()
    j = s.job(s.submit(type="echo", delay=30)["id"])
    for k in ("id", "queue", "type", "status", "created_at", "run_at", "cache_key"):
        check(isinstance(j[k], str), "%s is a string" % k, j[k])
    for k in ("priority", "attempts", "max_attempts", "version"):
        check(isinstance(j[k], int) and not isinstance(j[k], bool), "%s is an integer" % k, j[k])
    for k in ("cached", "cancel_requested"):
        check(isinstance(j[k], bool), "%s is a boolean" % k, j[k])
    for k in ("created_at", "run_at"):
        check(RFC3339_MS.match(j[k]), "%s is RFC 3339 UTC with milliseconds" % k, j[k])


def test_if_none_match_with_the_current_etag_is_304():
    s = stack()
    job = s.submit(type="echo")
    r = s.request("GET", "/jobs/" + job["id"], headers={"If-None-Match": _etag(job)})
    eq(r.status, 304, "GET with If-None-Match of the current version")
    eq(r.body, b"", "body of the 304")
    eq(r.headers.get("ETag"), _etag(job), "ETag of the 304")
    eq(r.headers.get("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options of the 304")
    eq(r.headers.get("Cache-Control"), "no-store", "Cache-Control of the 304")


def test_if_none_match_with_an_old_etag_is_200():
    s = stack()
    job = s.submit(type="echo")
    r = s.request("GET", "/jobs/" + job["id"], headers={"If-None-Match": '"%d"' % (job["version"] + 5)})
    eq(r.status, 200, "GET with If-None-Match of another version")


def test_if_none_match_list_and_weak_etag_match():
    s = stack()
    job = s.submit(type="echo")
    for inm in ('"999", %s' % _etag(job), "W/" + _etag(job)):
        r = s.request("GET", "/jobs/" + job["id"], headers={"If-None-Match": inm})
        eq(r.status, 304, "GET with If-None-Match: %s" % inm)


def test_head_has_the_headers_and_no_body():
    s = stack()
    job = s.submit(type="echo")
    g = s.request("GET", "/jobs/" + job["id"])
    h = s.request("HEAD", "/jobs/" + job["id"])
    eq(h.status, 200, "HEAD /jobs/{id}")
    eq(h.body, b"", "HEAD body")
    for k in ("ETag", "Content-Type", "Cache-Control", "X-Content-Type-Options"):
        eq(h.headers.get(k), g.headers.get(k), "HEAD vs GET header %s" % k)
    raw = s.raw_request(("HEAD /api/jobs/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                         % job["id"]).encode())
    check(raw.endswith(b"\r\n\r\n"), "nothing after the headers of a HEAD answer", raw[-80:])


def test_head_with_matching_etag_is_304():
    s = stack()
    job = s.submit(type="echo")
    r = s.request("HEAD", "/jobs/" + job["id"], headers={"If-None-Match": _etag(job)})
    eq(r.status, 304, "HEAD with If-None-Match of the current version")


def test_unknown_job_is_404_not_found():
    s = stack()
    job = s.submit(type="echo")
    other = job["id"][:-3] + ("xyz" if not job["id"].endswith("xyz") else "abc")
    with s.unchanged("GET of an unknown id"):
        r = s.request("GET", "/jobs/" + other)
        expect_error(r, 404, "not_found")
        eq(r.headers.get("Cache-Control"), "no-store", "Cache-Control of the 404")
        r = s.request("HEAD", "/jobs/" + other)
        eq(r.status, 404, "HEAD of an unknown id")


def test_malformed_ids_are_404_and_never_become_keys():
    s = stack()
    for bad in ("..", ".", "%2e%2e", "%00", "abc%00def", "x" * 65, "A" * 200, "a%2Fb",
                "%20", "job%0d%0aX-Injected:%201", "a*", "{x}", "%7Babc%7D", "%C3%A9t%C3%A9",
                "default", "37a8eec1.", "37a8eec1.%2F%2F%2F%2F%2F%2F%2F%2F%2F%2F%2F"):
        path = "/jobs/" + bad
        with s.unchanged("GET " + path), s.monitor() as cmds:
            r = s.request("GET", path)
        check(r.status in (400, 404), "GET %s: 404 (or nginx's own 400)" % path, r)
        if r.status == 404 and not harness.is_apache_nul_refusal(s, r, path):
            expect_error(r, 404, "not_found")
        check("X-Injected" not in r.headers, "no header injected by the id", r)
        if len(bad) > 3:
            check(not any(bad in c for c in cmds), "GET %s: no Redis command names it" % path,
                  cmds)
    s.submit(type="echo")


def test_malformed_ids_straight_to_the_program_are_404():
    # Without nginx in front: the program itself must refuse what nginx would normalize away.
    s = stack()
    for bad in ("..", "../../etc", "%00", "a%00", "x" * 65, "%2e%2e", "a/b"):
        with s.unchanged("fcgi GET " + bad), s.monitor() as cmds:
            r = s.fcgi("status", "GET", "/api/jobs/" + bad)
        expect_error(r, 404, "not_found")
        check(not any(bad in c for c in cmds if len(bad) > 2),
              "fcgi GET %s: no Redis command names it" % bad, cmds)


def test_wrong_methods_on_a_job_are_405_with_allow():
    s = stack()
    job = s.submit(type="echo")
    for m in ("POST", "PUT", "PATCH"):
        with s.unchanged("%s /jobs/{id}" % m):
            r = s.request(m, "/jobs/" + job["id"], json={"type": "echo"})
            expect_error(r, 405, "method_not_allowed")
            allow = {a.strip() for a in r.headers.get("Allow", "").split(",")} - {"OPTIONS"}
            # DELETE /jobs/{id} is jobgate-admin's route (contract section 7)
            eq(allow, {"GET", "HEAD", "DELETE"}, "%s /jobs/{id}: Allow (besides OPTIONS)" % m)
    eq(s.job(job["id"])["version"], job["version"], "version after wrong methods")


# ---- Long poll -------------------------------------------------------------------------------------

def test_long_poll_without_change_is_304_after_wait():
    s = stack()
    job = s.submit(type="echo")
    t0 = time.monotonic()
    r = s.request("GET", "/jobs/%s?wait=2" % job["id"], headers={"If-None-Match": _etag(job)})
    took = time.monotonic() - t0
    eq(r.status, 304, "long poll with no change")
    check(took >= 1.8, "the long poll waited about 2 s", took)
    check(took < 15, "the long poll ended after its wait", took)
    eq(r.headers.get("ETag"), _etag(job), "ETag of the 304")


def test_long_poll_with_version_parameter_waits_like_if_none_match():
    s = stack()
    job = s.submit(type="echo")
    t0 = time.monotonic()
    r = s.request("GET", "/jobs/%s?wait=1&version=%d" % (job["id"], job["version"]))
    took = time.monotonic() - t0
    eq(r.status, 304, "long poll with ?version= of the current version")
    check(took >= 0.8, "it waited about 1 s", took)


def test_long_poll_is_woken_by_a_change():
    s = stack()
    job = s.submit(type="echo")
    bg = _Bg(s, "GET", "/jobs/%s?wait=30" % job["id"], headers={"If-None-Match": _etag(job)})
    time.sleep(0.5)
    check(not bg.done(), "the long poll is still waiting before the change")
    c = s.request("POST", "/jobs/%s/cancel" % job["id"])
    eq(c.status, 200, "cancel")
    r, took = bg.result()
    eq(r.status, 200, "the waiting long poll's answer after the change")
    got = r.json()
    eq(got["status"], "cancelled", "status in the long poll's answer")
    eq(got["version"], c.json()["version"], "version in the long poll's answer")
    eq(r.headers.get("ETag"), '"%d"' % got["version"], "ETag of the answer")
    check(took < 15, "answered at the change, long before wait=30 ran out", took)


def test_long_polls_of_one_job_from_other_origins_and_methods_each_get_their_own_answer():
    # One change answers every waiter of the job from one rendering per set of headers and
    # method: each must still get its own CORS origin, and a HEAD no body.
    a, b = "https://a.example", "https://b.example"
    with harness.Stack(env={"JOBGATE_CORS_ORIGINS": "%s,%s" % (a, b)},
                       programs=("submit", "status"), name="lporigins") as s:
        job = s.submit(type="echo", queue=harness.unique_queue("lpo"))
        inm = {"If-None-Match": _etag(job)}
        path = "/jobs/%s?wait=30" % job["id"]
        waiters = [("GET", None), ("GET", a), ("GET", b), ("HEAD", a), ("GET", a), ("HEAD", None)]
        bgs = [_Bg(s, m, path, headers=dict(inm, **({"Origin": o} if o else {})))
               for m, o in waiters]
        time.sleep(1.0)
        check(not any(bg.done() for bg in bgs), "every long poll waits before the change")
        c = s.request("POST", "/jobs/%s/cancel" % job["id"])
        eq(c.status, 200, "cancel")
        version = c.json()["version"]
        for (method, origin), bg in zip(waiters, bgs):
            r, _ = bg.result()
            what = "%s from %s" % (method, origin or "no origin")
            eq(r.status, 200, "status of the long poll " + what)
            eq(r.headers.get("ETag"), '"%d"' % version, "ETag of " + what)
            eq(r.headers.get("Access-Control-Allow-Origin"), origin, "Allow-Origin of " + what)
            if method == "HEAD":
                eq(r.body, b"", "body of " + what)
            else:
                eq((r.json()["status"], r.json()["version"]), ("cancelled", version),
                   "status and version in the answer of " + what)


def test_long_poll_with_version_is_woken_by_a_change():
    s = stack()
    job = s.submit(type="echo")
    bg = _Bg(s, "GET", "/jobs/%s?wait=30&version=%d" % (job["id"], job["version"]))
    time.sleep(0.5)
    s.request("POST", "/jobs/%s/cancel" % job["id"])
    r, took = bg.result()
    eq(r.status, 200, "long poll with ?version= after a change")
    eq(r.json()["status"], "cancelled", "status")
    check(took < 15, "answered at the change", took)


def test_long_poll_with_a_stale_version_answers_at_once():
    s = stack()
    job = s.submit(type="echo")
    s.request("POST", "/jobs/%s/cancel" % job["id"])
    t0 = time.monotonic()
    r = s.request("GET", "/jobs/%s?wait=30" % job["id"], headers={"If-None-Match": _etag(job)})
    took = time.monotonic() - t0
    eq(r.status, 200, "long poll naming an old version")
    eq(r.json()["status"], "cancelled", "status")
    check(took < 10, "no wait when the version named is not current", took)
    r = s.request("GET", "/jobs/%s?wait=30&version=%d" % (job["id"], job["version"]))
    eq(r.status, 200, "long poll with an old ?version=")


def test_wait_without_a_version_answers_at_once():
    s = stack()
    job = s.submit(type="echo")
    t0 = time.monotonic()
    r = s.request("GET", "/jobs/%s?wait=30" % job["id"])
    eq(r.status, 200, "GET ?wait=30 without If-None-Match or version")
    check(time.monotonic() - t0 < 10, "no wait without a version to compare",
          time.monotonic() - t0)


def test_wait_zero_with_current_etag_is_304_at_once():
    s = stack()
    job = s.submit(type="echo")
    r = s.request("GET", "/jobs/%s?wait=0" % job["id"], headers={"If-None-Match": _etag(job)})
    eq(r.status, 304, "GET ?wait=0 with the current ETag")


def test_bad_wait_is_invalid_field():
    s = stack()
    job = s.submit(type="echo")
    for w in ("61", "-1", "abc", "1e9", "", "99999999999999999999"):
        with s.unchanged("GET ?wait=%s" % w):
            r = s.request("GET", "/jobs/%s?wait=%s" % (job["id"], w),
                          headers={"If-None-Match": _etag(job)})
            expect_error(r, 400, "invalid_field", "wait")


def test_bad_version_parameter_is_invalid_field():
    s = stack()
    job = s.submit(type="echo")
    for v in ("abc", "-1", "1.5"):
        with s.unchanged("GET ?version=%s" % v):
            r = s.request("GET", "/jobs/%s?wait=1&version=%s" % (job["id"], v))
            expect_error(r, 400, "invalid_field", "version")


def test_long_poll_of_an_unknown_job_is_404_at_once():
    s = stack()
    job = s.submit(type="echo")
    other = job["id"][:-3] + ("xyz" if not job["id"].endswith("xyz") else "abc")
    t0 = time.monotonic()
    r = s.request("GET", "/jobs/%s?wait=30" % other, headers={"If-None-Match": '"1"'})
    expect_error(r, 404, "not_found")
    check(time.monotonic() - t0 < 10, "404 without waiting", time.monotonic() - t0)


def test_parked_long_polls_do_not_hold_request_threads():
    # 4 request threads, 24 long polls: if waiters held threads, the plain GET would wait.
    with harness.Stack(threads=4, name="parked") as s:
        job = s.submit(type="echo")
        polls = [_Bg(s, "GET", "/jobs/%s?wait=20" % job["id"], headers={"If-None-Match": _etag(job)})
                 for _ in range(24)]
        time.sleep(1.0)
        check(not any(p.done() for p in polls), "all 24 long polls still waiting")
        t0 = time.monotonic()
        r = s.request("GET", "/jobs/" + job["id"], timeout=30)
        took = time.monotonic() - t0
        eq(r.status, 200, "a plain GET while 24 long polls wait on 4 threads")
        check(took < 10, "the plain GET was answered while the polls still wait", took)
        check(not any(p.done() for p in polls), "the polls still wait after the plain GET")
        other = s.submit(type="echo")
        eq(other["status"], "queued", "submit works meanwhile")
        s.request("POST", "/jobs/%s/cancel" % job["id"])
        for p in polls:
            r, took = p.result(30)
            eq(r.status, 200, "each long poll's answer after the change")
            eq(r.json()["status"], "cancelled", "status in each answer")
            check(took < 18, "each answered at the change", took)


def test_long_polls_of_different_jobs_wake_only_their_own():
    s = stack()
    a, b = s.submit(type="echo"), s.submit(type="echo")
    pa = _Bg(s, "GET", "/jobs/%s?wait=3" % a["id"], headers={"If-None-Match": _etag(a)})
    pb = _Bg(s, "GET", "/jobs/%s?wait=20" % b["id"], headers={"If-None-Match": _etag(b)})
    time.sleep(0.5)
    s.request("POST", "/jobs/%s/cancel" % b["id"])
    rb, tb = pb.result()
    eq(rb.status, 200, "the poll of the changed job")
    ra, ta = pa.result()
    eq(ra.status, 304, "the poll of the other job (unchanged)")
    check(ta >= 2.5, "the other job's poll waited its full 3 s", ta)


# ---- A job's life, with a real worker ------------------------------------------------------------

def test_echo_job_runs_to_done_with_the_payload_as_result():
    s = stack()
    payload = {"hello": "world", "n": [1, 2, 3], "nested": {"ok": True, "none": None}}
    q = harness.unique_queue()
    job = s.submit(type="echo", payload=payload, queue=q)
    s.start_worker(queues=(q,), types=["echo"])
    done = s.wait_status(job["id"], "done", 30)
    eq(done["result"], payload, "result of an echo job")
    eq(done["attempts"], 1, "attempts")
    eq(done["error"], None, "error")
    check(done["worker"], "worker names the worker that ran it", done["worker"])
    for k in ("started_at", "finished_at"):
        check(done[k] and RFC3339_MS.match(done[k]), "%s set" % k, done[k])
    check(done["started_at"] <= done["finished_at"], "started_at <= finished_at",
          (done["started_at"], done["finished_at"]))
    check(done["version"] > job["version"], "version grew", (job["version"], done["version"]))
    eq(s.request("GET", "/jobs/" + job["id"], headers={"If-None-Match": _etag(done)}).status, 304,
       "the finished job's ETag still matches")


def test_long_poll_follows_a_job_through_its_life():
    s = stack()
    q = harness.unique_queue()
    job = s.submit(type="sleep", payload={"ms": 1500, "steps": 3}, queue=q)
    s.start_worker(queues=(q,), types=["sleep"])
    seen, etag = [job["status"]], _etag(job)
    deadline = time.monotonic() + 40
    while seen[-1] not in ("done", "failed", "cancelled") and time.monotonic() < deadline:
        r = s.request("GET", "/jobs/%s?wait=20" % job["id"], headers={"If-None-Match": etag})
        if r.status == 200:
            j = r.json()
            check(int(r.headers["ETag"].strip('"')) == j["version"], "ETag = version", r)
            etag = r.headers["ETag"]
            if j["status"] != seen[-1]:
                seen.append(j["status"])
    eq(seen[0], "queued", "first status")
    check("running" in seen, "the long poll saw the job running", seen)
    eq(seen[-1], "done", "last status")
    eq(s.job(job["id"])["result"], {"slept_ms": 1500}, "result of the sleep job")


def test_progress_is_reported_while_running():
    s = stack()
    q = harness.unique_queue()
    job = s.submit(type="sleep", payload={"ms": 3000, "steps": 3}, queue=q)
    s.start_worker(queues=(q,), types=["sleep"])
    progress = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        j = s.job(job["id"])
        if j["progress"] is not None:
            check(isinstance(j["progress"], (int, float)) and 0 <= j["progress"] <= 100,
                  "progress in 0..100", j["progress"])
            progress.add(j["progress"])
        if j["status"] == "done":
            break
        time.sleep(0.1)
    eq(j["status"], "done", "final status")
    check(progress, "some progress was seen while the job ran", progress)


def test_failing_job_ends_failed_with_the_error():
    s = stack()
    q = harness.unique_queue()
    job = s.submit(type="fail", payload={"message": "boom at the end"}, max_attempts=1, queue=q)
    s.start_worker(queues=(q,), types=["fail"])
    j = s.wait_status(job["id"], "failed", 30)
    eq(j["error"], "exit status 1: boom at the end", "error of the failed job")
    eq(j["attempts"], 1, "attempts")
    eq(j["result"], None, "result")
    check(j["finished_at"], "finished_at set", j["finished_at"])
    with s.unchanged("cancel of a failed job"):
        expect_error(s.request("POST", "/jobs/%s/cancel" % job["id"]), 409, "conflict")


def test_delayed_job_does_not_run_before_run_at():
    s = stack()
    q = harness.unique_queue()
    job = s.submit(type="echo", delay=2, queue=q)
    s.start_worker(queues=(q,), types=["echo"])
    time.sleep(1.0)
    eq(s.job(job["id"])["status"], "queued", "status 1 s into a 2 s delay")
    j = s.wait_status(job["id"], "done", 30)
    check(j["started_at"] >= job["run_at"], "started_at >= run_at",
          (j["started_at"], job["run_at"]))
    # "run_at is set while a job waits for its delay or its retry" (contract section 4)
    eq(j["run_at"], None, "run_at of the finished job (no longer waiting)")


def test_finished_jobs_expire_after_the_retention():
    with harness.Stack(env={"JOBGATE_RETENTION": "2"}, name="retention") as s:
        job = s.submit(type="echo")
        queued = s.submit(type="echo")
        eq(s.request("POST", "/jobs/%s/cancel" % job["id"]).status, 200, "cancel")
        eq(s.job(job["id"])["status"], "cancelled", "right after the cancel")
        harness.wait_until(lambda: s.request("GET", "/jobs/" + job["id"]).status == 404, 10,
                           "the cancelled job to expire (JOBGATE_RETENTION=2)")
        expect_error(s.request("GET", "/jobs/" + job["id"]), 404, "not_found")
        eq(s.job(queued["id"])["status"], "queued", "an unfinished job does not expire")
        left = [k for k in s.redis("KEYS", "*") if job["id"] in k]
        eq(left, [], "keys of the expired job left in Redis")


def test_jobs_of_other_queues_and_types_are_not_claimed():
    s = stack()
    q = harness.unique_queue()
    other_q = s.submit(type="echo", queue=harness.unique_queue())
    other_t = s.submit(type="lines", payload={"count": 1}, queue=q)
    mine = s.submit(type="echo", queue=q)
    s.start_worker(queues=(q,), types=["echo"])
    s.wait_status(mine["id"], "done", 30)
    time.sleep(0.5)
    eq(s.job(other_q["id"])["status"], "queued", "a job of another queue")
    eq(s.job(other_t["id"])["status"], "queued", "a job of another type")
    # tidy: these stay queued forever otherwise
    for j in (other_q, other_t):
        s.request("POST", "/jobs/%s/cancel" % j["id"])


# nginx closes the FastCGI connection as soon as a client leaves; Apache's mod_proxy_fcgi only
# when it next writes to the client (the long poll's answer), so this is nginx's test (README).
@harness.only_front("nginx")
def test_long_polls_of_clients_that_went_away_are_released():
    import socket
    with harness.Stack(name="abandon") as s:
        job = s.submit(type="echo")
        pid = s.program_pids("status")[0]
        listening = s.sock("status")

        def open_fds():
            """(FastCGI connections, other fds) of the program. Its FastCGI connections (from
            the front) are its unix sockets bound to its listening path and connected (an
            accepted socket shows the listener's path); the others are mostly its Redis
            connections, opened as needed and kept: one per thread and loop on one Redis, one
            per node reached per thread and loop on a cluster."""
            with open("/proc/net/unix") as f:
                conns = {ln.split()[6] for ln in f.read().splitlines()[1:]
                         if ln.split()[7:8] == [listening] and ln.split()[5] == "03"}
            fcgi = other = 0
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in conns:
                    fcgi += 1
                else:
                    other += 1
            return fcgi, other

        def fds():
            return open_fds()[0]
        # a first long poll of the queue: its events channel is subscribed (one connection,
        # kept a while after) before the count starts
        short = "/jobs/%s?wait=0.2&version=%d" % (job["id"], job["version"])
        eq(s.request("GET", short).status, 304, "a short long poll")
        base, base_other = open_fds()
        socks = []
        for _ in range(50):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(("GET /api/jobs/%s?wait=60 HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n"
                       % (job["id"], _etag(job))).encode())
            socks.append(c)
        # each on a FastCGI connection of its own (one may be the connection the front kept
        # from the short long poll)
        harness.wait_until(lambda: fds() >= 50, 10, "50 long polls parked in jobgate-status")
        for c in socks:
            c.close()
        harness.wait_until(lambda: fds() <= base + 5, 15,
                           "the parked long polls to be released after their clients left")
        eq(s.job(job["id"])["id"], job["id"], "status still serves")
        # nor did the 50 long polls leave other fds behind: at most the Redis connections its
        # threads and loop had not opened yet (4 threads + loop + subscriber, per master)
        masters = len(s.cluster.masters()) if s.cluster else 1
        other = open_fds()[1]
        check(other <= base_other + 6 * masters,
              "at most %d more fds than before the long polls but FastCGI connections (were %d)"
              % (6 * masters, base_other), other)


# ---- kept-alive FastCGI connections ------------------------------------------------------------

def _fcgi_on(conn, uri):
    """One request with FCGI_KEEP_CONN on an open connection; returns the answer's status."""
    conn.sendall(harness.fcgi_request_bytes(harness.fcgi_params("GET", uri), keep_conn=True))
    return harness.fcgi_read_response(conn, uri).status


def test_idle_kept_alive_connections_do_not_hold_request_threads():
    s = stack()   # 4 request threads
    job = s.submit(type="echo")["id"]
    sock = s.sock("status")
    conns = []
    try:
        for i in range(12):   # three times as many idle connections as threads
            c = harness.fcgi_connect(sock, timeout=5)
            eq(_fcgi_on(c, "/api/jobs/" + job), 200, "request %d on its own kept connection" % i)
            conns.append(c)
        t0 = time.monotonic()
        r = harness.fcgi_request(sock, harness.fcgi_params("GET", "/api/jobs/" + job), timeout=5)
        eq(r.status, 200, "a new connection while 12 idle ones are kept")
        check(time.monotonic() - t0 < 2, "answered at once", time.monotonic() - t0)
        for i, c in enumerate(conns):   # and each kept connection carries its next request
            eq(_fcgi_on(c, "/api/jobs/" + job), 200, "second request on kept connection %d" % i)
    finally:
        for c in conns:
            c.close()


# ---- large answers to parked long polls (issue 9, finding 1) -----------------------------------

BIG_RESULT_CMD = ("sleep 2; { printf '{\"x\":\"'; head -c 5000000 /dev/zero | tr '\\0' a; "
                  "printf '\"}'; } > \"$JOBGATE_RESULT_FILE\"")


def test_a_5_mb_result_reaches_three_long_polls_whole_and_status_keeps_serving():
    with harness.Stack(name="bigresult") as s:
        q = harness.unique_queue("big")
        s.start_worker(queues=(q,), types={"big": BIG_RESULT_CMD})
        job = s.submit(type="big", queue=q)
        bgs = [_Bg(s, "GET", "/jobs/%s?wait=20&version=%d" % (job["id"], job["version"]))
               for _ in range(3)]
        got_done = 0
        for i, bg in enumerate(bgs):
            # the long polls may first see running (a change), then poll again until done
            r, _ = bg.result()
            while r.status == 200 and r.json()["status"] != "done":
                r = s.request("GET", "/jobs/%s?wait=20&version=%d"
                              % (job["id"], r.json()["version"]))
            eq(r.status, 200, "long poll %d of a job with a 5 MB result" % i)
            x = r.json()["result"]["x"]
            eq(len(x), 5000000, "length of the result's x delivered to long poll %d" % i)
            check(set(x) == {"a"}, "the result delivered to long poll %d is intact" % i)
            got_done += 1
        eq(got_done, 3, "long polls that got the whole result")
        eq(s.job(job["id"])["status"], "done", "jobgate-status still serving after")
        eq(s.check_alive(), [], "processes that died")


# ---- lost wake-ups (issue 9, finding 4) --------------------------------------------------------

def test_a_status_process_subscribes_the_queues_it_waits_on_and_keeps_few_it_no_longer_needs():
    # one long poll on each of 70 queues: 70 queue events channels subscribed while they wait
    # (each queue's own shard channel), and when they have ended, at most 64 kept for a while
    with harness.Stack(name="chans") as s:
        queues = [harness.unique_queue("ch%d" % i) for i in range(70)]
        jobs = [s.submit(type="echo", queue=q, delay=3600) for q in queues]
        # parked long enough to be seen all at once on a loaded machine (or a cluster)
        polls = [_Bg(s, "GET", "/jobs/%s?wait=15&version=%d" % (j["id"], j["version"]))
                 for j in jobs]

        def channels():
            return [c for c in s.redis("PUBSUB", "SHARDCHANNELS", "jobgate:*:events")]
        want = sorted("jobgate:{%s}:events" % j["id"][:8] for j in jobs)
        harness.wait_until(lambda: sorted(channels()) == want, 15,
                           "the events channels of the 70 waited queues subscribed")
        for p in polls:
            eq(p.result()[0].status, 304, "a long poll whose job did not change")
        harness.wait_until(lambda: len(channels()) == 64, 10,
                           "64 of the 70 channels kept once nobody waits on them")
        check(set(channels()) <= set(want), "expected only channels of the waited queues",
              channels())


def test_a_change_whose_read_by_the_loop_fails_still_wakes_the_long_poll():
    with harness.Stack(name="lostwake") as s:
        job = s.submit(type="echo", queue=harness.unique_queue("lw"))
        bg = _Bg(s, "GET", "/jobs/%s?wait=12&version=%d" % (job["id"], job["version"]))
        time.sleep(0.8)
        check(not bg.done(), "the long poll waits before the change")
        jkey = "jobgate:{%s}:job:%s" % (job["id"][:8], job["id"])
        # the change is published, then Redis answers nobody for 3 s: the loop's read of the
        # changed job fails (2 s command timeout); it must be read again, not dropped
        s.redis_pipeline([("HSET", jkey, "progress", "42"), ("HINCRBY", jkey, "version", "1"),
                          ("SPUBLISH", "jobgate:{%s}:events" % job["id"][:8],
                           "job %s %d" % (job["id"], job["version"] + 1)),
                          ("CLIENT", "PAUSE", "3000", "ALL")])
        r, took = bg.result()
        eq(r.status, 200, "the long poll's answer to a change first read while Redis stalled")
        eq(r.json()["version"], job["version"] + 1, "version in the answer")
        eq(r.json()["progress"], 42, "progress in the answer")
        check(took < 11, "answered after the stall, before wait=12 ran out", took)
