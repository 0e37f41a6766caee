"""The result cache through nginx (contract sections 3 and 6): jobgate-cache's routes and their
errors, cache keys as any client computes them, POST /jobs with cache: true (hits, coalescing,
the worker storing results, TTLs, failures), and the Idempotency-Key header. Bad input changes
nothing in Redis."""

import hashlib
import json
import os
import threading
import time

import harness
from harness import JOB_FIELDS, check, eq, expect_error, stack

# HTTP suite: runs behind nginx and again behind Apache (run.py)
FRONTS = harness.FRONTS

P = "jobgate"   # the default JOBGATE_KEY_PREFIX
HEX_A = "a" * 64


# ---- helpers ---------------------------------------------------------------------------------

def jcs(v):
    """RFC 8785 for the simple values these tests use (no exotic doubles)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(jcs(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + jcs(v[k]) for k in keys) + "}"
    raise TypeError(v)


def cache_key(type_, payload=None, version=None):
    """The contract's cache key, computed here without asking jobgate."""
    obj = {"payload": {} if payload is None else payload, "type": type_}
    if version is not None:
        obj["version"] = version
    return hashlib.sha256(jcs(obj).encode("utf-8")).hexdigest()


def post_key(s, body, ctype="application/json"):
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    h = {"Content-Type": ctype} if ctype else {}
    return s.request("POST", "/cache/key", body=body, headers=h)


def key_of(s, body):
    r = post_key(s, body)
    eq(r.status, 200, "POST /cache/key %s" % (body if isinstance(body, str) else json.dumps(body)))
    k = r.json()
    eq(list(k), ["key"], "members of the POST /cache/key answer")
    return k["key"]


def put(s, key, body, ttl=None, ctype="application/json"):
    path = "/cache/%s%s" % (key, "" if ttl is None else "?ttl=%s" % ttl)
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    h = {"Content-Type": ctype} if ctype else {}
    return s.request("PUT", path, body=body, headers=h)


def stats(s):
    h = s.redis("HGETALL", P + ":cache:stats") or []
    d = dict(zip(h[::2], h[1::2]))
    return int(d.get("hits", 0)), int(d.get("misses", 0))


def qkey(queue, what):
    """A key of a queue (docs/redis.md): P:{<first 8 hex of SHA-256(queue)>}:q:<queue>:<what>."""
    return "%s:{%s}:q:%s:%s" % (P, hashlib.sha256(queue.encode()).hexdigest()[:8], queue, what)


def random_key():
    return os.urandom(32).hex()


def submit_any(s, body, headers=None):
    """POST /jobs; returns the answer (any status)."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return s.request("POST", "/jobs", body=json.dumps(body), headers=h)


def counting_worker(s, queue, runs, extra=None):
    """A worker for a type "count" whose every run appends a line to the file runs and whose
    result is its payload, and "boom" that always fails."""
    types = {"count": 'echo run >> %s; cat > "$JOBGATE_RESULT_FILE"' % runs,
             "boom": "echo boom >> %s; echo nope >&2; exit 3" % runs}
    types.update(extra or {})
    return s.start_worker(queues=(queue,), types=types, concurrency=2)


def runs_in(path):
    try:
        with open(path) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


def concurrently(n, fn):
    """Runs fn(i) on n threads started together; returns the results (exceptions re-raised)."""
    out, errs = [None] * n, []
    go = threading.Barrier(n)

    def one(i):
        try:
            go.wait(10)
            out[i] = fn(i)
        except Exception as e:  # reported below
            errs.append(e)
    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    if errs:
        raise errs[0]
    return out


# ---- POST /cache/key ---------------------------------------------------------------------------

def test_cache_key_is_sha256_of_the_jcs_form():
    s = stack()
    for type_, payload, version in (("echo", {"a": 1, "b": [True, None, "x"]}, None),
                                    ("resize", {"w": 640, "h": 480, "name": "caf\u00e9 \u20ac"}, None),
                                    ("echo", [0.5, -3, 2.25, "\u0001\n\""], None),
                                    ("echo", "text", "v2"),
                                    ("echo", None, None),
                                    ("a.b-c_d", {"\u00e9": 1, "z": 2, "a": {"y": 1, "b": 2}}, "")):
        body = {"type": type_}
        if payload is not None:
            body["payload"] = payload
        if version is not None:
            body["cache_version"] = version
        eq(key_of(s, body), cache_key(type_, payload, version), "key of %s" % json.dumps(body))


def test_cache_key_ignores_member_order_whitespace_and_number_spelling():
    s = stack()
    want = cache_key("echo", {"a": 1, "b": {"c": [1, 2]}})
    for raw in ('{"type":"echo","payload":{"a":1,"b":{"c":[1,2]}}}',
                '{"payload":{"b":{"c":[1,2]},"a":1},"type":"echo"}',
                ' {\n "type" : "echo" ,\t"payload" : { "b" : { "c" : [ 1 , 2 ] } , "a" : 1.0 } }\n',
                '{"type":"echo","payload":{"a":1.0e0,"b":{"c":[10e-1,0.2e1]}}}'):
        eq(key_of(s, raw), want, "key of %r" % raw)


def test_cache_version_and_absent_payload_in_the_key():
    s = stack()
    plain = key_of(s, {"type": "echo", "payload": {"x": 1}})
    v1 = key_of(s, {"type": "echo", "payload": {"x": 1}, "cache_version": "1"})
    v2 = key_of(s, {"type": "echo", "payload": {"x": 1}, "cache_version": "2"})
    eq(len({plain, v1, v2}), 3, "distinct keys without version, with version 1 and 2")
    eq(key_of(s, {"type": "echo"}), key_of(s, {"type": "echo", "payload": {}}),
       "key with payload absent vs {}")
    check(key_of(s, {"type": "echo", "payload": None}) != key_of(s, {"type": "echo"}),
          "payload null and absent give different keys")


def test_cache_key_is_the_jobs_cache_key():
    s = stack()
    body = {"type": "echo", "payload": {"n": 7}, "cache_version": "x"}
    job = s.submit(body=dict(body, queue=harness.unique_queue(), delay=600))
    eq(job["cache_key"], key_of(s, body), "cache_key of a job vs POST /cache/key")


def test_cache_key_bad_input_is_rejected_and_changes_nothing():
    s = stack()
    cases = [
        ('{"type":"echo","colour":1}', 400, "invalid_field", "colour"),
        ('{"type":"echo","queue":"default"}', 400, "invalid_field", "queue"),
        ('{"payload":{}}', 400, "invalid_field", "type"),
        ('{"type":"Echo"}', 400, "invalid_field", "type"),
        ('{"type":5}', 400, "invalid_field", "type"),
        ('{"type":"echo","cache_version":"%s"}' % ("v" * 65), 400, "invalid_field", "cache_version"),
        ('{"type":"echo","cache_version":3}', 400, "invalid_field", "cache_version"),
        ('{"type":"echo","payload":1e999}', 400, "invalid_field", "payload"),
        ('{"type":"echo","payload":{"a":1,"a":2}}', 400, "invalid_json", None),
        ('{"type":"echo","payload":"\\ud800"}', 400, "invalid_json", None),
        ('{"type":"echo",}', 400, "invalid_json", None),
        ('[{"type":"echo"}]', 400, "invalid_json", None),
        ('', 400, "invalid_json", None),
    ]
    for body, status, code, field in cases:
        with s.unchanged("POST /cache/key %r" % body):
            expect_error(post_key(s, body), status, code, field)
    for ct in (None, "text/plain", "application/x-www-form-urlencoded"):
        with s.unchanged("POST /cache/key with Content-Type %r" % ct):
            expect_error(post_key(s, '{"type":"echo"}', ct), 415, "unsupported_media_type")
    with s.unchanged("POST /cache/key over the body limit"):
        expect_error(post_key(s, json.dumps({"type": "echo", "payload": "x" * 1048576})),
                     413, "payload_too_large")


def test_cache_key_refuses_member_names_with_u0000():
    # the key must be computed from the members that would run: "type\u0000" is no "type"
    s = stack()
    for body in ('{"type":"echo","type\\u0000":"other"}',
                 '{"type":"echo","payload\\u0000":{"x":1}}',
                 '{"type":"echo","queue\\u0000x":"other"}'):
        with s.unchanged("POST /cache/key %r" % body):
            expect_error(post_key(s, body), 400, "invalid_json")


def test_cache_key_unknown_multibyte_field_gets_a_json_error():
    s = stack()
    body = json.dumps({"type": "echo", "\u20ac" * 70: 1}, ensure_ascii=False).encode()
    with s.unchanged("POST /cache/key with an unknown 70-character name"):
        e = expect_error(post_key(s, body), 400, "invalid_field")
    check(e["message"].startswith("unknown field \"\u20ac"), "message names the field",
          e["message"])


# ---- GET / HEAD / PUT / DELETE /cache/{key} ------------------------------------------------------

def test_put_then_get_head_delete():
    s = stack()
    k = random_key()
    r = put(s, k, {"answer": [42, "x", None]})
    eq(r.status, 204, "PUT a new entry")
    eq(r.body, b"", "body of the 204")
    eq(r.headers.get("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options of the 204")
    r = s.request("GET", "/cache/" + k)
    eq(r.status, 200, "GET the entry")
    eq(r.json(), {"answer": [42, "x", None]}, "stored JSON")
    eq(r.headers.get("Content-Type", "").split(";")[0], "application/json", "Content-Type")
    eq(r.headers.get("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options")
    ttl = int(r.headers.get("X-Cache-TTL", "-1"))
    check(604790 <= ttl <= 604800, "X-Cache-TTL: the default 604800 s, just started", ttl)
    h = s.request("HEAD", "/cache/" + k)
    eq(h.status, 200, "HEAD the entry")
    eq(h.body, b"", "HEAD has no body")
    check(h.headers.get("X-Cache-TTL") is not None, "HEAD has X-Cache-TTL", dict(h.headers))
    r = s.request("DELETE", "/cache/" + k)
    eq((r.status, r.body), (204, b""), "DELETE the entry")
    expect_error(s.request("GET", "/cache/" + k), 404, "not_found")
    eq(s.request("HEAD", "/cache/" + k).status, 404, "HEAD after DELETE")
    expect_error(s.request("DELETE", "/cache/" + k), 404, "not_found")
    eq(s.redis("EXISTS", "%s:cache:%s" % (P, k)), 0, "the entry's key in Redis after DELETE")


def test_put_stores_any_json_value_and_replaces():
    s = stack()
    k = random_key()
    for v in ('"text"', "0", "-1.5e3", "true", "null", "[]", '{"a":{"b":[1,{"c":null}]}}',
              '"caf\u00e9 \\ud83d\\ude00"'):
        eq(put(s, k, v).status, 204, "PUT %s" % v)
        r = s.request("GET", "/cache/" + k)
        eq((r.status, r.body.decode()), (200, v), "GET after PUT %s" % v)


def test_entry_is_the_redis_key_prefix_cache_key():
    s = stack()
    k = random_key()
    put(s, k, [1], ttl=100)
    eq(s.redis("GET", "%s:cache:%s" % (P, k)), "[1]", "value of %s:cache:<key>" % P)
    check(0 < s.redis("TTL", "%s:cache:%s" % (P, k)) <= 100, "TTL of the entry in Redis")
    # gone now, not 100 s later in the middle of another test's "Redis unchanged" check
    eq(s.request("DELETE", "/cache/" + k).status, 204, "DELETE of the entry")


def test_ttl_is_honoured_and_falls():
    s = stack()
    k = random_key()
    eq(put(s, k, {"t": 1}, ttl=3).status, 204, "PUT ?ttl=3")
    t0 = int(s.request("GET", "/cache/" + k).headers.get("X-Cache-TTL"))
    check(2 <= t0 <= 3, "X-Cache-TTL right after PUT ?ttl=3", t0)
    time.sleep(1.6)
    t1 = int(s.request("HEAD", "/cache/" + k).headers.get("X-Cache-TTL"))
    check(t1 < t0, "X-Cache-TTL falls (%d, then %d 1.6 s later)" % (t0, t1), t1)
    harness.wait_until(lambda: s.request("GET", "/cache/" + k).status == 404, 5,
                       "the entry to expire after its 3 s")
    put(s, k, 1, ttl=31536000)
    check(int(s.request("GET", "/cache/" + k).headers.get("X-Cache-TTL")) > 31535000,
          "X-Cache-TTL with ttl=31536000")


def test_put_errors_change_nothing():
    s = stack()
    k = random_key()
    for ttl in ("0", "31536001", "-1", "abc", "1.5", "", "%2B5", "%205", "1e3"):
        with s.unchanged("PUT ?ttl=%s" % ttl):
            expect_error(put(s, k, {"a": 1}, ttl=ttl), 400, "invalid_field", "ttl")
    for ttl in ("18446744073709551617", "-9223372036854775809", "1e400"):
        with s.unchanged("PUT ?ttl=%s" % ttl):
            expect_error(put(s, k, {"a": 1}, ttl=ttl), 400, "invalid_field", "ttl")
    for ct in (None, "text/plain", "application/jsonx", "multipart/form-data; boundary=x"):
        with s.unchanged("PUT with Content-Type %r" % ct):
            expect_error(put(s, k, '{"a":1}', ctype=ct), 415, "unsupported_media_type")
    for body in ("", "{", '{"a":1,"a":2}', '"\\udc00"', "[1,]", "nul", "{} x", b"\"\xff\""):
        with s.unchanged("PUT %r" % body):
            expect_error(put(s, k, body), 400, "invalid_json")
    with s.unchanged("PUT nested 65 deep"):
        expect_error(put(s, k, "[" * 65 + "]" * 65), 400, "invalid_json")
    with s.unchanged("PUT over the body limit"):
        expect_error(put(s, k, json.dumps("x" * 1048576)), 413, "payload_too_large")
    eq(put(s, k, "[" * 64 + "]" * 64).status, 204, "PUT nested 64 deep")


def test_malformed_keys_are_404_and_never_reach_redis():
    s = stack()
    bad = ["A" * 64, "aB" * 32, "a" * 63, "a" * 65, "g" * 64, HEX_A[:-1] + "%41",
           "..", "%2e%2e", "a" * 32 + "%00" + "a" * 31, "*", "key", HEX_A + ".json",
           "%7B" + "a" * 62 + "%7D", "%20" + "a" * 63, "a" * 200]
    for b in bad:
        for method in ("GET", "HEAD", "PUT", "DELETE"):
            path = "/cache/" + b
            with s.unchanged("%s %s" % (method, path)), s.monitor() as cmds:
                if method == "PUT":
                    r = put(s, b, {"a": 1}, ttl=60)
                else:
                    r = s.request(method, path)
            check(r.status in (400, 404, 405), "%s %s: 404 (or nginx's 400)" % (method, path), r)
            if (r.status in (404, 405) and method != "HEAD"
                    and not harness.is_apache_nul_refusal(s, r, path)):
                expect_error(r, r.status, "not_found" if r.status == 404 else "method_not_allowed")
            check(not any(b.lower()[:60] in c.lower() for c in cmds if len(b) > 3),
                  "%s %s: no Redis command names the key" % (method, path), cmds)
            check(not any("cache:" in c for c in cmds),
                  "%s %s: no Redis command on a cache key" % (method, path), cmds)


def test_wrong_methods_are_405_with_allow():
    s = stack()
    for m in ("POST", "PATCH"):
        with s.unchanged("%s /cache/{key}" % m):
            r = s.request(m, "/cache/" + HEX_A, body="{}", headers={"Content-Type": "application/json"})
            expect_error(r, 405, "method_not_allowed")
            allow = {a.strip() for a in r.headers.get("Allow", "").split(",")} - {"OPTIONS"}
            eq(allow, {"GET", "HEAD", "PUT", "DELETE"}, "%s /cache/{key}: Allow" % m)
    for m in ("PUT", "DELETE", "PATCH"):
        with s.unchanged("%s /cache/key" % m):
            r = s.request(m, "/cache/key", body="{}", headers={"Content-Type": "application/json"})
            check(r.status in (404, 405), "%s /cache/key: 404 (not a key) or 405" % m, r)


def test_get_and_head_count_hits_and_misses():
    s = stack()
    k = random_key()
    put(s, k, {"x": 1})
    h0, m0 = stats(s)
    s.request("GET", "/cache/" + k)
    s.request("HEAD", "/cache/" + k)
    s.request("GET", "/cache/" + random_key())
    s.request("HEAD", "/cache/" + random_key())
    s.request("GET", "/cache/" + random_key())
    h1, m1 = stats(s)
    eq((h1 - h0, m1 - m0), (2, 3), "hits and misses added by 2 hits and 3 misses")
    s.request("GET", "/cache/" + "B" * 64)   # malformed: not a lookup
    eq(stats(s), (h1, m1), "hits and misses after a malformed key")


# ---- POST /jobs with cache: true ---------------------------------------------------------------

def test_second_identical_submit_is_a_cache_hit_without_a_run():
    s = stack()
    q = harness.unique_queue("cache")
    runs = os.path.join(s.dir, "runs-%s" % q)
    counting_worker(s, q, runs)
    body = {"type": "count", "queue": q, "payload": {"n": 1, "s": "caf\u00e9"}, "cache": True}
    first = s.submit(body=body)
    eq((first["cached"], "coalesced" in first), (False, False), "first submit: cached, coalesced")
    done = s.wait_status(first["id"], "done", 30)
    eq(done["result"], body["payload"], "result of the first run")
    key = cache_key("count", body["payload"])
    eq(done["cache_key"], key, "cache_key of the job")
    got = harness.wait_until(lambda: s.request("GET", "/cache/" + key).status == 200, 10,
                             "the worker to store the result under the cache key")
    check(got, "stored")
    r = s.request("GET", "/cache/" + key)
    eq(r.json(), body["payload"], "the stored result")
    ttl = int(r.headers.get("X-Cache-TTL"))
    check(604700 < ttl <= 604800, "X-Cache-TTL of a stored result: the default cache_ttl", ttl)
    h0, m0 = stats(s)

    r = submit_any(s, dict(body, payload={"s": "caf\u00e9", "n": 1.0}))   # same key
    eq(r.status, 200, "second identical submit: 200 (a cache hit)")
    j = r.json()
    eq(sorted(j), sorted(JOB_FIELDS), "members of the cached job")
    check(j["id"] != first["id"], "a new job id for the cache hit", j["id"])
    eq((j["status"], j["cached"], j["result"], j["attempts"], j["cache_key"]),
       ("done", True, body["payload"], 0, key), "status, cached, result, attempts, cache_key")
    check(j["finished_at"] is not None, "finished_at of the cached job", j)
    eq(r.headers.get("Location"), "/api/jobs/" + j["id"], "Location of the cached job")
    eq(s.job(j["id"]), j, "GET /jobs/{id} of the cached job")
    eq(stats(s), (h0 + 1, m0), "hits and misses after the hit")
    time.sleep(0.5)
    eq(runs_in(runs), 1, "runs of the job type after a cache hit")

    other = submit_any(s, dict(body, cache=False))   # cache: false runs again
    eq(other.status, 202, "identical submit with cache false")
    s.wait_status(other.json()["id"], "done", 30)
    eq(runs_in(runs), 2, "runs after a submit with cache false")
    v2 = s.submit(body=dict(body, cache_version="2"))   # another key: runs again
    s.wait_status(v2["id"], "done", 30)
    eq(runs_in(runs), 3, "runs after a submit with another cache_version")
    check(s.redis("TTL", "%s:cache:%s" % (P, key)) > 0, "the stored entry has a TTL")


def test_cache_ttl_of_the_job_is_honoured():
    s = stack()
    q = harness.unique_queue("cttl")
    runs = os.path.join(s.dir, "runs-%s" % q)
    counting_worker(s, q, runs)
    body = {"type": "count", "queue": q, "payload": {"ttl": True}, "cache": True, "cache_ttl": 2}
    job = s.submit(body=body)
    s.wait_status(job["id"], "done", 30)
    key = job["cache_key"]
    harness.wait_until(lambda: s.request("GET", "/cache/" + key).status == 200, 10,
                       "the stored result")
    ttl = int(s.request("GET", "/cache/" + key).headers.get("X-Cache-TTL"))
    check(0 <= ttl <= 2, "X-Cache-TTL of a result stored with cache_ttl 2", ttl)
    eq(submit_any(s, body).status, 200, "a submit while the entry lives: a hit")
    harness.wait_until(lambda: s.request("GET", "/cache/" + key).status == 404, 6,
                       "the entry to expire")
    r = submit_any(s, body)
    eq(r.status, 202, "a submit once the entry expired: a new job")
    s.wait_status(r.json()["id"], "done", 30)
    eq(runs_in(runs), 2, "runs: the first job and the one after expiry")


def test_twenty_concurrent_identical_cache_submits_make_one_job():
    s = stack()
    q = harness.unique_queue("race")
    body = {"type": "count", "queue": q, "payload": {"race": 1}, "cache": True}
    h0, m0 = stats(s)
    answers = concurrently(20, lambda i: submit_any(s, body))
    bad = [r for r in answers if r.status != 202]
    eq(bad, [], "answers other than 202 among 20 concurrent identical submits")
    jobs = [r.json() for r in answers]
    ids = {j["id"] for j in jobs}
    eq(len(ids), 1, "distinct job ids among 20 concurrent identical cache submits")
    eq(sum(1 for j in jobs if j.get("coalesced") is True), 19, "answers with coalesced: true")
    eq(sum(1 for j in jobs if "coalesced" not in j), 1, "answers without coalesced (the new job)")
    eq(s.redis("ZCARD", qkey(q, "jobs")), 1, "jobs in the queue in Redis")
    eq(stats(s), (h0, m0 + 20), "hits and misses after 20 missing submits")
    job_id = ids.pop()
    marker = qkey(q, "inflight:" + cache_key("count", {"race": 1}))
    eq(s.redis("KEYS", qkey(q, "inflight:*")), [marker], "in-flight markers of the queue")
    eq(s.redis("GET", marker), job_id, "the in-flight marker names the job")

    runs = os.path.join(s.dir, "runs-%s" % q)
    counting_worker(s, q, runs)
    s.wait_status(job_id, "done", 30)
    harness.wait_until(lambda: s.redis("EXISTS", marker) == 0, 5,
                       "the in-flight marker to go when the job is done")
    harness.wait_until(lambda: s.request("GET", "/cache/" + cache_key("count", {"race": 1})).status
                       == 200, 10, "the result stored")
    eq(runs_in(runs), 1, "runs of the 20 submits")


def test_in_flight_marker_expires_after_the_jobs_longest_life():
    # docs/redis.md: delay + attempts x (timeout + 5 min) + retries x 72 min + 1 day
    s = stack()
    q = harness.unique_queue("ttl")
    body = {"type": "echo", "queue": q, "payload": {"ttl": 1}, "cache": True,
            "timeout": 10, "max_attempts": 2, "delay": 5}
    r = submit_any(s, body)
    eq(r.status, 202, "POST /jobs with cache true")
    marker = qkey(q, "inflight:" + cache_key("echo", {"ttl": 1}))
    eq(s.redis("GET", marker), r.json()["id"], "the in-flight marker names the job")
    want = 5000 + 2 * (10000 + 300000) + 1 * 4320000 + 86400000
    got = s.redis("PTTL", marker)
    check(want - 60000 < got <= want, "PTTL of the in-flight marker: at most %d ms, within a "
          "minute of it" % want, got)


def test_submit_coalesces_on_a_running_job():
    s = stack()
    q = harness.unique_queue("run")
    s.start_worker(queues=(q,), types=["sleep"])
    body = {"type": "sleep", "queue": q, "payload": {"ms": 1500, "steps": 1}, "cache": True}
    first = s.submit(body=body)
    s.wait_status(first["id"], "running", 20)
    r = submit_any(s, body)
    eq(r.status, 202, "submit while the same key runs")
    j = r.json()
    eq((j["id"], j["status"], j.get("coalesced")), (first["id"], "running", True),
       "id, status and coalesced of the answer")
    eq(r.headers.get("Location"), "/api/jobs/" + first["id"], "Location: the running job")
    check("coalesced" not in s.job(first["id"]), "GET /jobs/{id} does not say coalesced")
    s.wait_status(first["id"], "done", 30)
    harness.wait_until(lambda: submit_any(s, body).status == 200, 10,
                       "a submit after it is done to be a cache hit")


def test_failed_job_leaves_no_cache_entry_and_no_marker():
    s = stack()
    q = harness.unique_queue("fail")
    runs = os.path.join(s.dir, "runs-%s" % q)
    counting_worker(s, q, runs)
    body = {"type": "boom", "queue": q, "payload": {"f": 1}, "cache": True, "max_attempts": 1}
    job = s.submit(body=body)
    failed = s.wait_status(job["id"], "failed", 30)
    check(failed["error"] and "exit status 3" in failed["error"], "error of the failed job",
          failed["error"])
    time.sleep(0.3)
    expect_error(s.request("GET", "/cache/" + job["cache_key"]), 404, "not_found")
    eq(s.redis("KEYS", qkey(q, "inflight:*")), [], "in-flight markers left")
    r = submit_any(s, body)
    eq(r.status, 202, "a submit after the failure: a new job")
    check("coalesced" not in r.json() and r.json()["id"] != job["id"], "a new job", r.json())
    s.wait_status(r.json()["id"], "failed", 30)
    eq(runs_in(runs), 2, "runs: both failed jobs ran")


def test_failed_attempt_with_retries_left_still_coalesces():
    s = stack()
    q = harness.unique_queue("retry")
    body = {"type": "flaky", "queue": q, "payload": {"fail_times": 1}, "cache": True,
            "max_attempts": 3}
    job = s.submit(body=body)
    s.start_worker(queues=(q,), types=["flaky"], env={"JOBGATE_RETRY_BASE": "2"})
    harness.wait_until(lambda: s.job(job["id"])["attempts"] >= 1
                       and s.job(job["id"])["status"] == "queued", 20,
                       "the first attempt to fail and the job to wait for its retry")
    r = submit_any(s, body)
    eq((r.status, r.json()["id"], r.json().get("coalesced")), (202, job["id"], True),
       "a submit while the job waits for its retry")
    eq(s.wait_status(job["id"], "done", 30)["result"], {"attempt": 2}, "result of the retry")


def test_cancelled_job_frees_its_key():
    s = stack()
    q = harness.unique_queue("cancel")
    body = {"type": "echo", "queue": q, "payload": {"c": 1}, "cache": True}
    job = s.submit(body=body)
    eq(s.request("POST", "/jobs/%s/cancel" % job["id"]).status, 200, "cancel the queued job")
    eq(s.redis("KEYS", qkey(q, "inflight:*")), [], "in-flight markers left")
    r = submit_any(s, body)
    eq(r.status, 202, "submit after the cancel")
    check(r.json()["id"] != job["id"] and "coalesced" not in r.json(), "a new job", r.json())


def test_deleted_entry_makes_the_next_submit_run():
    s = stack()
    q = harness.unique_queue("del")
    runs = os.path.join(s.dir, "runs-%s" % q)
    counting_worker(s, q, runs)
    body = {"type": "count", "queue": q, "payload": {"d": 1}, "cache": True}
    job = s.submit(body=body)
    s.wait_status(job["id"], "done", 30)
    key = job["cache_key"]
    harness.wait_until(lambda: s.request("GET", "/cache/" + key).status == 200, 10, "stored")
    eq(s.request("DELETE", "/cache/" + key).status, 204, "DELETE the stored result")
    r = submit_any(s, body)
    eq(r.status, 202, "submit after DELETE: a new job")
    s.wait_status(r.json()["id"], "done", 30)
    eq(runs_in(runs), 2, "runs")
    put(s, key, {"from": "PUT"})
    r = submit_any(s, body)
    eq((r.status, r.json()["result"], r.json()["cached"]), (200, {"from": "PUT"}, True),
       "a submit answered from an entry written with PUT")


def test_cache_submit_bad_input_changes_nothing():
    s = stack()
    for body in ({"type": "echo", "cache": True, "colour": 1},
                 {"type": "echo", "cache": "yes"},
                 {"type": "echo", "cache": True, "cache_ttl": 0},
                 {"type": "echo", "cache": True, "cache_version": "v" * 65},
                 {"cache": True}):
        with s.unchanged("POST /jobs %s" % json.dumps(body)):
            r = submit_any(s, body)
            expect_error(r, 400, "invalid_field")


# ---- Idempotency-Key ---------------------------------------------------------------------------

def test_idempotency_key_repeat_returns_the_first_job():
    s = stack()
    q = harness.unique_queue("idem")
    ik = "order-%s" % os.urandom(6).hex()
    r1 = submit_any(s, {"type": "echo", "queue": q, "payload": {"n": 1}},
                    {"Idempotency-Key": ik})
    eq(r1.status, 202, "first request with an Idempotency-Key")
    first = r1.json()
    r2 = submit_any(s, {"type": "sleep", "queue": "other", "payload": {"n": 2}, "priority": 9},
                    {"Idempotency-Key": ik})
    eq(r2.status, 200, "repeat with another body")
    eq((r2.json()["id"], r2.json()["type"], r2.json()["queue"]), (first["id"], "echo", q),
       "the repeat answers the first job")
    eq(r2.headers.get("Location"), "/api/jobs/" + first["id"], "Location of the repeat")
    with s.unchanged("a repeat with a broken body"):
        r3 = s.request("POST", "/jobs", body="{not json", headers={
            "Content-Type": "application/json", "Idempotency-Key": ik})
    eq((r3.status, r3.json()["id"]), (200, first["id"]), "a repeat whatever its body says")
    jobs = [k for k in s.redis("KEYS", "%s:{*}:job:*" % P) if s.redis("HGET", k, "queue") in (q, "other")]
    eq(len(jobs), 1, "jobs made by three requests with one Idempotency-Key")
    other = submit_any(s, {"type": "echo", "queue": q}, {"Idempotency-Key": ik + "-2"})
    eq(other.status, 202, "another key makes another job")
    check(other.json()["id"] != first["id"], "another job for another key")


def test_idempotency_key_is_stored_hashed_for_24_hours():
    s = stack()
    ik = "k:{raw}/%s" % os.urandom(4).hex()
    job = submit_any(s, {"type": "echo", "delay": 600}, {"Idempotency-Key": ik}).json()
    name = "%s:idem:%s" % (P, hashlib.sha256(ik.encode()).hexdigest())
    eq(s.redis("GET", name), job["id"], "value of P:idem:<sha256 of the key>")
    ttl = s.redis("TTL", name)
    check(86300 < ttl <= 86400, "TTL of the idempotency record: 24 h", ttl)
    check(not any(ik in k for k in s.redis("KEYS", "*")), "the raw header in no key name")


def test_twenty_concurrent_repeats_make_one_job():
    s = stack()
    q = harness.unique_queue("idemrace")
    ik = "race-%s" % os.urandom(6).hex()
    answers = concurrently(20, lambda i: submit_any(
        s, {"type": "echo", "queue": q, "payload": {"i": i}}, {"Idempotency-Key": ik}))
    # one creates the job (202); a repeat answers it (200) once it exists, or, while the first
    # request is still creating it, 409 conflict with Retry-After: 1 at once (no waiting)
    eq(sum(r.status == 202 for r in answers), 1, "202s among 20 concurrent requests with one key")
    eq(sorted({r.status for r in answers} - {200, 202, 409}), [],
       "statuses other than 200, 202, 409")
    for r in answers:
        if r.status == 409:
            expect_error(r, 409, "conflict")
            eq(r.headers.get("Retry-After"), "1", "Retry-After of a repeat still in progress")
    eq(len({r.json()["id"] for r in answers if r.status in (200, 202)}), 1, "distinct job ids")
    eq(s.redis("ZCARD", qkey(q, "jobs")), 1, "jobs in the queue")
    first = [r.json()["id"] for r in answers if r.status == 202][0]
    late = submit_any(s, {"type": "echo", "queue": q}, {"Idempotency-Key": ik})
    eq((late.status, late.json()["id"]), (200, first), "a repeat afterwards")


def test_idempotency_key_with_a_coalesced_submit():
    s = stack()
    q = harness.unique_queue("idemco")
    body = {"type": "echo", "queue": q, "payload": {"co": 1}, "cache": True}
    first = s.submit(body=body)
    r = submit_any(s, body, {"Idempotency-Key": "co-" + first["id"]})
    eq((r.status, r.json()["id"], r.json().get("coalesced")), (202, first["id"], True),
       "a coalesced submit with an Idempotency-Key")
    r = submit_any(s, {"type": "echo"}, {"Idempotency-Key": "co-" + first["id"]})
    eq((r.status, r.json()["id"]), (200, first["id"]), "its repeat: the coalesced job")


def test_bad_idempotency_keys_are_400_and_change_nothing():
    s = stack()
    for ik in ("", "a" * 129, "has space", "caf\u00e9", "tab\there"):
        with s.unchanged("Idempotency-Key %r" % ik):
            r = s.request("POST", "/jobs", body=json.dumps({"type": "echo"}), headers={
                "Content-Type": "application/json", "Idempotency-Key": ik.encode("utf-8")})
            expect_error(r, 400, "invalid_field", "Idempotency-Key")
    r = submit_any(s, {"type": "echo", "delay": 600}, {"Idempotency-Key": "~" * 128})
    eq(r.status, 202, "a 128-character key of visible ASCII")
    r = submit_any(s, {"type": "echo", "delay": 600}, {"Idempotency-Key": "!"})
    eq(r.status, 202, "a 1-character key")


# ---- the program itself --------------------------------------------------------------------------

def test_cache_program_answers_only_its_routes():
    s = stack()
    for method, uri in (("GET", "/api/jobs/37a8eec1.AAAAAAAAAAAAAAAAAAAAAA"), ("POST", "/api/jobs"),
                        ("GET", "/api/health")):
        r = s.fcgi("cache", method, uri)
        expect_error(r, 404, "not_found")
    r = s.fcgi("cache", "POST", "/api/cache/key", body='{"type":"echo"}',
               headers={"Content-Type": "application/json"})
    eq((r.status, r.json()["key"]), (200, cache_key("echo")), "POST /cache/key straight to FastCGI")


@harness.single_redis_only("stops the one Redis; on a cluster a master is killed instead "
                           "(cluster.a_master_killed_is_replaced_by_its_replica_with_no_restart)")
def test_redis_away_is_503_then_recovers():
    with harness.Stack(programs=("submit", "status", "cache"), name="cachedown") as s:
        k = random_key()
        eq(put(s, k, [1]).status, 204, "PUT with Redis up")
        s.stop_redis()
        for method in ("GET", "HEAD", "DELETE"):
            r = s.request(method, "/cache/" + k)
            eq((r.status, r.headers.get("Retry-After")), (503, "1"), "%s with Redis down" % method)
        expect_error(put(s, k, [2]), 503, "unavailable")
        expect_error(submit_any(s, {"type": "echo", "cache": True}), 503, "unavailable")
        expect_error(submit_any(s, {"type": "echo"}, {"Idempotency-Key": "down"}), 503,
                     "unavailable")
        eq(post_key(s, {"type": "echo"}).status, 200, "POST /cache/key needs no Redis")
        s.start_redis()
        harness.wait_until(lambda: put(s, k, [3]).status == 204, 10, "PUT once Redis is back")
        # each request thread reconnects on its own, after its own backoff: the GET may land on
        # one still waiting (503) for a moment
        r = harness.wait_until(lambda: (lambda r: r if r.status != 503 else None)(
            s.request("GET", "/cache/" + k)), 10, "GET once Redis is back")
        eq(r.json(), [3], "GET once Redis is back")
