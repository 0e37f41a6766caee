"""POST /jobs and POST /jobs/{id}/cancel through nginx (contract sections 2-4): the answers a
client sees, and that bad input changes nothing in Redis."""

import json
import re
import time

import harness
from harness import JOB_FIELDS, RFC3339_MS, check, eq, expect_error, stack

# HTTP suite: runs behind nginx and again behind Apache (run.py)
FRONTS = harness.FRONTS

ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _ms(t):
    """RFC 3339 with milliseconds -> epoch seconds."""
    return time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone \
        + int(t[20:23]) / 1000.0


def _post_raw(s, body, ctype="application/json", headers=None):
    h = {"Content-Type": ctype} if ctype is not None else {}
    h.update(headers or {})
    return s.request("POST", "/jobs", body=body, headers=h)


def _rejects(s, body, status, code, field=None, ctype="application/json"):
    """Asserts that posting body gets the error, changes nothing in Redis, and that the program
    still takes a valid job afterwards."""
    with s.unchanged("POST /jobs %r" % (body[:80] if isinstance(body, (str, bytes)) else body)):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        r = _post_raw(s, body, ctype)
        expect_error(r, status, code, field)
    s.submit(type="echo")   # still serving


# ---- A valid submit ------------------------------------------------------------------------------

def test_submit_answers_202_with_location_and_the_job():
    s = stack()
    r = s.request("POST", "/jobs", json={"type": "echo"})
    eq(r.status, 202, "POST /jobs status")
    job = r.json()
    eq(r.headers.get("Location"), "/api/jobs/" + job["id"], "Location header")
    eq(r.headers.get("Content-Type", "").split(";")[0], "application/json", "Content-Type")
    eq(r.headers.get("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options")
    eq(r.headers.get("Cache-Control"), "no-store", "Cache-Control")


def test_submitted_job_has_every_field_with_defaults():
    s = stack()
    job = s.submit(type="echo")
    eq(sorted(job), sorted(JOB_FIELDS), "members of the job object")
    expected = {"queue": "default", "type": "echo", "status": "queued", "priority": 0,
                "attempts": 0, "max_attempts": 3, "progress": None, "started_at": None,
                "finished_at": None, "run_at": None, "worker": None, "result": None,
                "error": None, "cached": False, "cancel_requested": False}
    for k, v in expected.items():
        eq(job[k], v, "default of %s" % k)
    check(isinstance(job["version"], int) and not isinstance(job["version"], bool)
          and job["version"] >= 1, "version: an integer >= 1", job["version"])
    check(isinstance(job["created_at"], str) and RFC3339_MS.match(job["created_at"]),
          "created_at: RFC 3339 UTC with milliseconds", job["created_at"])
    check(abs(_ms(job["created_at"]) - time.time()) < 60, "created_at: now", job["created_at"])
    check(isinstance(job["cache_key"], str) and re.match(r"^[0-9a-f]{64}$", job["cache_key"]),
          "cache_key: 64 lowercase hex", job["cache_key"])


def test_submit_keeps_queue_priority_and_max_attempts():
    s = stack()
    job = s.submit(type="sleep", queue="q-1.x_y", priority=-1000, max_attempts=25, timeout=1,
                   payload={"ms": 1})
    eq((job["queue"], job["type"], job["priority"], job["max_attempts"]),
       ("q-1.x_y", "sleep", -1000, 25), "queue, type, priority, max_attempts")
    job = s.submit(type="echo", priority=1000, max_attempts=1, timeout=86400)
    eq((job["priority"], job["max_attempts"]), (1000, 1), "priority, max_attempts at the top")


def test_status_shows_what_submit_answered():
    s = stack()
    job = s.submit(type="echo", priority=7, payload={"a": [1, 2, {"b": None}]})
    got = s.job(job["id"])
    eq(got, job, "GET /jobs/{id} right after submit")


def test_job_ids_are_url_safe_random_and_distinct():
    s = stack()
    ids = [s.submit(type="echo")["id"] for _ in range(40)]
    for i in ids:
        check(ID_RE.match(i), "id of [A-Za-z0-9_.-], at most 64 characters", i)
        # 128 random bits need at least 22 characters of a 64-character alphabet
        check(len(i) >= 22, "id long enough to hold 128 random bits", i)
    eq(len(set(ids)), len(ids), "number of distinct ids among %d submits" % len(ids))


def test_delay_sets_run_at():
    s = stack()
    job = s.submit(type="echo", delay=120)
    eq(job["status"], "queued", "status of a delayed job")
    check(job["run_at"] is not None and RFC3339_MS.match(job["run_at"]),
          "run_at set (RFC 3339 ms) for a delayed job", job["run_at"])
    d = _ms(job["run_at"]) - _ms(job["created_at"])
    check(119.5 <= d <= 120.5, "run_at = created_at + 120 s", d)


def test_fractional_delay_and_timeout_are_accepted():
    s = stack()
    job = s.submit(type="echo", delay=1.5, timeout=2.5)
    d = _ms(job["run_at"]) - _ms(job["created_at"])
    check(1.4 <= d <= 1.6, "run_at = created_at + 1.5 s", d)


def test_zero_delay_leaves_run_at_null():
    s = stack()
    eq(s.submit(type="echo", delay=0)["run_at"], None, "run_at with delay 0")


def test_boundary_values_are_accepted():
    s = stack()
    name64 = "a" * 64
    for body in ({"type": name64, "queue": name64},
                 {"type": "echo", "max_attempts": 1, "timeout": 1, "delay": 604800},
                 {"type": "echo", "cache": False, "cache_ttl": 1},
                 {"type": "echo", "cache_ttl": 31536000, "cache_version": "v" * 64},
                 {"type": "0", "queue": "9"},
                 {"type": "echo", "payload": None},
                 {"type": "echo", "payload": "text"},
                 {"type": "echo", "payload": [1, 2.5, True, None]}):
        r = s.request("POST", "/jobs", json=body)
        eq(r.status, 202, "POST /jobs %s" % json.dumps(body)[:120])


def test_charset_parameter_in_content_type_is_accepted():
    s = stack()
    r = _post_raw(s, '{"type":"echo"}', "application/json; charset=utf-8")
    eq(r.status, 202, "POST with Content-Type application/json; charset=utf-8")


def test_unicode_payload_and_surrogate_pairs_are_accepted():
    s = stack()
    r = _post_raw(s, '{"type":"echo","payload":{"s":"\\ud83d\\ude00 \u00e9\u4e2d"}}')
    eq(r.status, 202, "payload with a valid surrogate pair and non-ASCII text")


def test_payload_just_under_the_body_limit_is_accepted():
    s = stack()
    body = json.dumps({"type": "echo", "payload": {"blob": "x" * (1048576 - 100)}})
    check(len(body) <= 1048576, "test body within the default limit", len(body))
    r = _post_raw(s, body)
    eq(r.status, 202, "POST of a %d-byte body (limit 1048576)" % len(body))


def test_nesting_64_deep_is_accepted():
    s = stack()
    # the outer object is level 1, "payload" adds 63 arrays: 64 levels
    body = '{"type":"echo","payload":' + "[" * 63 + "]" * 63 + "}"
    eq(_post_raw(s, body).status, 202, "a body nested 64 deep")


def test_chunked_request_body_is_accepted():
    s = stack()
    body = b'{"type":"echo","payload":{"chunked":true}}'
    req = (b"POST /api/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    r = harness.parse_http_response(s.raw_request(req), "chunked POST /api/jobs")
    eq(r.status, 202, "status of a chunked POST")


def test_concurrent_submits_all_succeed_with_distinct_ids():
    import threading
    s = stack()
    ids, errors = [], []

    def one():
        try:
            r = s.request("POST", "/jobs", json={"type": "echo"})
            if r.status == 202:
                ids.append(r.json()["id"])
            else:
                errors.append(r)
        except Exception as e:  # reported below
            errors.append(e)
    ts = [threading.Thread(target=one, daemon=True) for _ in range(40)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    eq(errors, [], "errors among 40 concurrent submits")
    eq(len(set(ids)), 40, "distinct ids of 40 concurrent submits")


# ---- Bad input: broken JSON, content type, size, depth ----------------------------------------

def test_broken_json_is_invalid_json():
    s = stack()
    for body in ('{', '{"type":"echo",}', '{"type":"echo"} x', "{'type':'echo'}", 'nul',
                 '{"type":"echo" "queue":"a"}', '{"type":"\\x41"}', ''):
        _rejects(s, body, 400, "invalid_json")


def test_body_that_is_not_an_object_is_rejected():
    s = stack()
    for body in ('[]', '"echo"', '42', 'null', '[{"type":"echo"}]'):
        with s.unchanged("POST /jobs %s" % body):
            r = _post_raw(s, body)
            eq(r.status, 400, "status for body %s" % body)
            code = r.json()["error"]["code"]
            check(code in ("invalid_json", "invalid_field"),
                  "code invalid_json or invalid_field for body %s" % body, code)


def test_invalid_utf8_is_invalid_json():
    s = stack()
    _rejects(s, b'{"type":"echo","payload":"\xff\xfe"}', 400, "invalid_json")


def test_duplicate_member_names_are_invalid_json():
    s = stack()
    _rejects(s, '{"type":"echo","type":"echo"}', 400, "invalid_json")
    _rejects(s, '{"type":"echo","payload":{"a":1,"a":2}}', 400, "invalid_json")
    _rejects(s, '{"type":"echo","payload":[{"k":{"x":1,"x":1}}]}', 400, "invalid_json")


def test_lone_surrogates_are_invalid_json():
    s = stack()
    _rejects(s, '{"type":"echo","payload":"\\ud800"}', 400, "invalid_json")
    _rejects(s, '{"type":"echo","payload":"\\udc00x"}', 400, "invalid_json")
    _rejects(s, '{"type":"echo","payload":{"\\ud83d":1}}', 400, "invalid_json")


def test_member_names_with_u0000_are_invalid_json_and_make_no_job():
    # json-c cuts a name at its NUL: "type\u0000" would be read as a second "type" (and win),
    # "queue\u0000x" as "queue" — the body checked would not be the body that runs
    s = stack()
    for body in ('{"type":"echo","type\\u0000":"other"}',
                 '{"type":"echo","payload\\u0000":{"x":1}}',
                 '{"type":"echo","queue\\u0000x":"other"}'):
        _rejects(s, body, 400, "invalid_json")


def test_unknown_field_with_a_long_multibyte_name_gets_a_json_error():
    # 70 three-byte characters: the message shows 64 bytes of the name, which would end inside
    # a character; the body must still be JSON (valid UTF-8)
    s = stack()
    name = "\u20ac" * 70
    with s.unchanged("POST /jobs with an unknown 70-character name"):
        r = _post_raw(s, json.dumps({"type": "echo", name: 1}, ensure_ascii=False).encode())
        e = expect_error(r, 400, "invalid_field")
    check(e["message"].startswith("unknown field \"\u20ac") and "\ufffd" not in e["message"],
          "message: the start of the name, whole characters only", e["message"])


def test_numbers_past_64_bits_are_invalid_field_naming_the_field():
    # the same overflow class as the logs cursor: nothing wraps, saturates into range or 503s
    s = stack()
    for field, text in (("priority", "18446744073709551617"), ("priority", "-99999999999999999999"),
                        ("max_attempts", "18446744073709551616"), ("timeout", "1e400"),
                        ("delay", "-1e400"), ("cache_ttl", "9223372036854775808"),
                        ("timeout", "18446744073709551616")):
        _rejects(s, '{"type":"echo","%s":%s}' % (field, text), 400, "invalid_field", field)


def test_nesting_over_64_is_invalid_json():
    s = stack()
    _rejects(s, '{"type":"echo","payload":' + "[" * 64 + "]" * 64 + "}", 400, "invalid_json")
    _rejects(s, '{"type":"echo","payload":' + '{"a":' * 70 + "1" + "}" * 70 + "}",
             400, "invalid_json")


def test_very_deep_nesting_does_not_crash():
    s = stack()
    _rejects(s, '{"type":"echo","payload":' + "[" * 200000 + "]" * 200000 + "}",
             400, "invalid_json")


def test_wrong_content_type_is_415():
    s = stack()
    for ct in (None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx",
               "multipart/form-data; boundary=x"):
        _rejects(s, '{"type":"echo"}', 415, "unsupported_media_type", ctype=ct)


def test_body_over_the_limit_is_413():
    s = stack()
    body = json.dumps({"type": "echo", "payload": "x" * 1048576})
    _rejects(s, body, 413, "payload_too_large")


def test_configured_body_limit_is_413_above_it():
    with harness.Stack(env={"JOBGATE_MAX_BODY": "200"}, programs=("submit", "status"),
                       name="maxbody") as s:
        ok = json.dumps({"type": "echo", "payload": "y" * 100})
        eq(_post_raw(s, ok).status, 202, "a %d-byte body with JOBGATE_MAX_BODY=200" % len(ok))
        big = json.dumps({"type": "echo", "payload": "y" * 300})
        _rejects(s, big, 413, "payload_too_large")


def test_empty_body_is_rejected():
    s = stack()
    with s.unchanged("POST /jobs with no body"):
        r = s.request("POST", "/jobs", headers={"Content-Type": "application/json"})
        expect_error(r, 400, "invalid_json")


# ---- Bad input: fields -----------------------------------------------------------------------

def test_unknown_field_is_invalid_field_naming_it():
    s = stack()
    _rejects(s, {"type": "echo", "colour": "red"}, 400, "invalid_field", "colour")
    _rejects(s, {"type": "echo", "Type": "echo"}, 400, "invalid_field", "Type")


def test_missing_type_is_invalid_field():
    s = stack()
    _rejects(s, {}, 400, "invalid_field", "type")
    _rejects(s, {"queue": "default"}, 400, "invalid_field", "type")


def test_bad_type_is_invalid_field():
    s = stack()
    for v in ("", "Echo", "-echo", "_x", "a" * 65, "e cho", "e/cho", "échо", 5, None, ["echo"]):
        _rejects(s, {"type": v}, 400, "invalid_field", "type")


def test_bad_queue_is_invalid_field():
    s = stack()
    for v in ("", "Default", ".q", "q" * 65, "q:x", "q{x}", 1, None, True):
        _rejects(s, {"type": "echo", "queue": v}, 400, "invalid_field", "queue")


def test_bad_priority_is_invalid_field():
    s = stack()
    for v in (-1001, 1001, 1.5, "1", True, None, 1e300):
        _rejects(s, {"type": "echo", "priority": v}, 400, "invalid_field", "priority")


def test_bad_max_attempts_is_invalid_field():
    s = stack()
    for v in (0, 26, -1, 2.5, "3", False):
        _rejects(s, {"type": "echo", "max_attempts": v}, 400, "invalid_field", "max_attempts")


def test_bad_timeout_is_invalid_field():
    s = stack()
    for v in (0, 0.5, 86401, -1, "10", None, True):
        _rejects(s, {"type": "echo", "timeout": v}, 400, "invalid_field", "timeout")


def test_bad_delay_is_invalid_field():
    s = stack()
    for v in (-1, -0.001, 604801, "0", None, False):
        _rejects(s, {"type": "echo", "delay": v}, 400, "invalid_field", "delay")


def test_bad_cache_settings_are_invalid_field():
    s = stack()
    for v in ("yes", 1, 0, None):
        _rejects(s, {"type": "echo", "cache": v}, 400, "invalid_field", "cache")
    for v in (0, 31536001, 1.5, "60", None):
        _rejects(s, {"type": "echo", "cache_ttl": v}, 400, "invalid_field", "cache_ttl")
    for v in ("v" * 65, 3, None, ["v"]):
        _rejects(s, {"type": "echo", "cache_version": v}, 400, "invalid_field", "cache_version")


def test_huge_numbers_are_invalid_field():
    s = stack()
    _rejects(s, '{"type":"echo","priority":1' + "0" * 40 + '}', 400, "invalid_field", "priority")
    _rejects(s, '{"type":"echo","delay":1e999}', 400, "invalid_field", "delay")


# ---- Wrong methods --------------------------------------------------------------------------------

def test_wrong_methods_on_jobs_are_405_with_allow():
    s = stack()
    for m in ("PUT", "DELETE", "PATCH"):
        with s.unchanged("%s /jobs" % m):
            r = s.request(m, "/jobs", json={"type": "echo"})
            expect_error(r, 405, "method_not_allowed")
            allow = [a.strip() for a in r.headers.get("Allow", "").split(",")]
            check("POST" in allow, "%s /jobs: Allow lists POST" % m, r.headers.get("Allow"))


def test_get_on_cancel_is_405_with_allow_post():
    s = stack()
    job = s.submit(type="echo")
    for m in ("GET", "PUT", "DELETE"):
        with s.unchanged("%s /jobs/{id}/cancel" % m):
            r = s.request(m, "/jobs/%s/cancel" % job["id"])
            expect_error(r, 405, "method_not_allowed")
            allow = {a.strip() for a in r.headers.get("Allow", "").split(",")} - {"OPTIONS"}
            eq(allow, {"POST"}, "%s /jobs/{id}/cancel: Allow (besides OPTIONS)" % m)
    eq(s.job(job["id"])["status"], "queued", "status after wrong-method cancels")


# ---- Cancel ---------------------------------------------------------------------------------------

def test_cancel_of_a_queued_job_is_200_cancelled():
    s = stack()
    job = s.submit(type="echo")
    r = s.request("POST", "/jobs/%s/cancel" % job["id"])
    eq(r.status, 200, "cancel of a queued job")
    eq(r.headers.get("Cache-Control"), "no-store", "Cache-Control of the cancel answer")
    eq(r.headers.get("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options")
    c = r.json()
    eq(sorted(c), sorted(JOB_FIELDS), "members of the cancelled job object")
    eq((c["id"], c["status"]), (job["id"], "cancelled"), "id and status after cancel")
    check(c["version"] > job["version"], "version grows with the cancel",
          (job["version"], c["version"]))
    check(c["finished_at"] and RFC3339_MS.match(c["finished_at"]), "finished_at set",
          c["finished_at"])
    eq(s.job(job["id"]), c, "GET /jobs/{id} after cancel")


def test_cancel_of_a_delayed_job_is_200():
    s = stack()
    job = s.submit(type="echo", delay=600)
    r = s.request("POST", "/jobs/%s/cancel" % job["id"])
    eq(r.status, 200, "cancel of a delayed job")
    eq(r.json()["status"], "cancelled", "status")


def test_cancel_of_a_cancelled_job_is_409():
    s = stack()
    job = s.submit(type="echo")
    eq(s.request("POST", "/jobs/%s/cancel" % job["id"]).status, 200, "first cancel")
    with s.unchanged("second cancel"):
        r = s.request("POST", "/jobs/%s/cancel" % job["id"])
        expect_error(r, 409, "conflict")


def test_cancel_of_a_done_job_is_409():
    s = stack()
    q = harness.unique_queue()
    job = s.submit(type="echo", payload={"x": 1}, queue=q)
    s.start_worker(queues=(q,), types=["echo"])
    s.wait_status(job["id"], "done", 30)
    with s.unchanged("cancel of a done job"):
        r = s.request("POST", "/jobs/%s/cancel" % job["id"])
        expect_error(r, 409, "conflict")


def test_cancel_of_an_unknown_job_is_404():
    s = stack()
    job_id = s.submit(type="echo")["id"]
    other = job_id[:-4] + ("AAAA" if not job_id.endswith("AAAA") else "BBBB")
    with s.unchanged("cancel of an unknown id"):
        expect_error(s.request("POST", "/jobs/%s/cancel" % other), 404, "not_found")


def test_cancel_of_malformed_ids_is_404_and_touches_no_key():
    s = stack()
    for bad in ("..", "%2e%2e", "%00", "a%00b", "x" * 65, "a%2Fb", "%20", "a.b", "*",
                "default:job", "{x}", "%7Bx%7D", "%C3%A9"):
        path = "/jobs/%s/cancel" % bad
        with s.unchanged("POST " + path), s.monitor() as cmds:
            r = s.request("POST", path)
        check(r.status in (400, 404), "POST %s: 404 (or nginx's own 400)" % path, r)
        if r.status == 404 and not harness.is_apache_nul_refusal(s, r, path):
            expect_error(r, 404, "not_found")
        check(not any(bad in c for c in cmds if len(bad) > 2),
              "POST %s: no Redis command names the id" % path, cmds)
    s.submit(type="echo")
