"""The job object is rendered once per change, by the script that changes the job, into the job
hash's `json` field (docs/redis.md, "The job object"); every reader copies that text. These tests
drive one job after another through every script path that changes a job (submit: new, delayed,
cached, coalesced; claim: promotion, claim, taking back; log's progress; complete: every
outcome; cancel; admin retry and retry-failed) and compare, each time, the stored text, the HTTP
answer of the change and GET /jobs/{id} with one expected rendering made here from the hash's
fields by the contract's rules. The renderer is one block copied into each script: a test checks
the copies are the same bytes."""

import datetime
import glob
import json
import os
import re
import time

import harness
from harness import check, eq, stack, unique_queue

# HTTP suite: runs behind nginx and again behind Apache (run.py)
FRONTS = harness.FRONTS

MEMBERS = [("id", "s"), ("queue", "s"), ("type", "s"), ("status", "s"), ("priority", "n"),
           ("attempts", "n"), ("max_attempts", "n"), ("progress", "n"), ("created_at", "t"),
           ("started_at", "t"), ("finished_at", "t"), ("run_at", "t"), ("worker", "s"),
           ("result", "n"), ("error", "s"), ("cached", "b"), ("cache_key", "s"),
           ("cancel_requested", "b"), ("version", "n")]
SHORT = {0x22: b'\\"', 0x5C: b"\\\\", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t", 0x08: b"\\b",
         0x0C: b"\\f"}
# every byte a JSON string must escape, "/" and DEL (not escaped), and UTF-8 of 2, 3 and 4 bytes
NASTY = "".join(chr(c) for c in range(1, 32)) + '"\\/\x7f é € 😀 </script>'


def _string(b):
    out = bytearray(b'"')
    for c in b:
        if c in SHORT:
            out += SHORT[c]
        elif c < 0x20:
            out += b"\\u%04x" % c
        else:
            out.append(c)
    return bytes(out + b'"')


def _time(ms):
    t = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + \
        datetime.timedelta(milliseconds=int(ms))
    return ("\"%s.%03dZ\"" % (t.strftime("%Y-%m-%dT%H:%M:%S"), int(ms) % 1000)).encode()


def expected(fields):
    """The job object of contract section 4 from the job hash (bytes -> bytes)."""
    parts = []
    for name, kind in MEMBERS:
        v = fields.get(name.encode())
        if kind == "b":
            x = b"true" if v == b"1" else b"false"
        elif not v:
            x = b"null"
        elif kind == "s":
            x = _string(v)
        elif kind == "t":
            x = _time(v)
        else:
            x = v
        parts.append(b'"' + name.encode() + b'":' + x)
    return b"{" + b",".join(parts) + b"}"


def _key(jid):
    return "jobgate:{%s}:job:%s" % (jid[:8], jid)


def _fields(s, jid):
    h = s.redis("HGETALL", _key(jid), raw=True)
    return dict(zip(h[::2], h[1::2]))


def same(s, jid, what, answer=None, extra=b""):
    """The stored text, the change's HTTP answer (if any) and a status read are all the
    expected rendering of the job's hash."""
    f = _fields(s, jid)
    want = expected(f)
    eq(f.get(b"json"), want, "%s: the stored job object vs the expected rendering" % what)
    check(json.loads(want)["version"] == int(f[b"version"]), "%s: version in the object" % what)
    if answer is not None:
        eq(answer, want[:-1] + extra + b"}", "%s: the HTTP answer" % what)
    r = s.request("GET", "/jobs/" + jid)
    eq((r.status, r.body), (200, want), "%s: GET /jobs/{id}" % what)
    eq(r.header("ETag"), '"%s"' % f[b"version"].decode(), "%s: ETag" % what)
    return json.loads(want)


class _Worker:
    """This test as the worker of one queue: the shipped scripts, as docs/redis.md says."""

    def __init__(self, s, q):
        self.s, self.q = s, q
        self.sha = {}
        for n in ("claim", "log", "complete"):
            with open(os.path.join(harness.ROOT, "redis", n + ".lua"), "rb") as fh:
                self.sha[n] = s.redis("SCRIPT", "LOAD", fh.read())

    def claim(self, tag, want, lease_ms=30000, wid="w-render.1"):
        P, q = "jobgate:{%s}:" % tag, self.q
        return self.s.redis("EVALSHA", self.sha["claim"], 4, P + "q:%s:delayed" % q,
                            P + "q:%s:running" % q, P + "q:%s:counts" % q,
                            P + "q:%s:ready:t" % q, P, q, wid, want, lease_ms, 1, 1000, 86400,
                            10000, P + "events", P + "wake:" + q)

    def log(self, jid, fence, progress, *pairs):
        P = "jobgate:{%s}:" % jid[:8]
        return self.s.redis("EVALSHA", self.sha["log"], 2, P + "job:" + jid, P + "log:" + jid,
                            jid, fence, 10000, P + "events", progress, "", *pairs)

    def complete(self, jid, fence, outcome, text=""):
        P, q = "jobgate:{%s}:" % jid[:8], self.q
        return self.s.redis("EVALSHA", self.sha["complete"], 6, P + "job:" + jid, P + "log:" + jid,
                            P + "q:%s:running" % q, P + "q:%s:delayed" % q, P + "q:%s:counts" % q,
                            P + "q:%s:ready:t" % q, jid, fence, outcome, text, 1, 1000, 86400,
                            10000, P + "events", P + "wake:" + q)


def _claim_one(w, tag, jid, **kw):
    rep = w.claim(tag, 1, **kw)
    eq([j[0] for j in rep[3:]], [jid], "the job claimed")
    return rep[3][3]   # fence


def test_the_renderer_is_the_same_bytes_in_every_script_that_changes_a_job():
    blocks = {}
    for path in sorted(glob.glob(os.path.join(harness.ROOT, "redis", "*.lua"))):
        text = open(path, encoding="utf-8").read()
        m = re.search(r"^-- >>> render:.*?^-- <<< render\n", text, re.S | re.M)
        # a script that sets a job's version holds the renderer, and each of its version bumps
        # is a render: HINCRBY followed by render(), or 'version' in the fields change() sets
        body = text.split("-- <<< render")[-1]
        bumps = re.search(r"HINCRBY', [^,]+, 'version'|'version', ", body)
        name = os.path.basename(path)
        if bumps:
            check(m is not None, "%s changes the job's version: it holds the renderer" % name)
            for b in re.finditer(r"HINCRBY', ([^,]+), 'version', 1\)\n(.*)\n", text):
                check(b.group(2).strip().startswith(("render(", "local text = render(")),
                      "%s: the object is rendered right after the version bump" % name,
                      b.group(0))
        if m:
            blocks[name] = m.group(0)
    check(len(blocks) >= 6, "scripts holding the renderer", sorted(blocks))
    first = sorted(blocks)[0]
    for name, b in blocks.items():
        eq(b, blocks[first], "the renderer of %s vs that of %s" % (name, first))


def test_every_change_of_a_job_stores_the_one_rendering_that_every_reader_shows():
    s = stack()
    q = unique_queue("render")
    w = _Worker(s, q)
    # submit: new (its answer), and a delayed one
    r = s.request("POST", "/jobs", json={"type": "t", "queue": q, "priority": -7,
                                         "max_attempts": 2, "payload": {"x": NASTY}})
    eq(r.status, 202, "submit")
    a = r.json()["id"]
    tag = a[:8]
    same(s, a, "submitted", r.body)
    # a job queued at once has its object made by jobgate-submit but for created_at (the
    # script adds Redis' time): the same bytes as the scripts' renderer, whatever the values
    for body in ({"type": "a.b-c_9", "queue": q + ".x-y_z", "priority": 1000, "max_attempts": 25},
                 {"type": "t", "queue": q + ".x-y_z", "priority": -1000, "cache": True,
                  "cache_version": "v\"1", "payload": [NASTY]}):
        r = s.request("POST", "/jobs", json=body)
        eq(r.status, 202, "submit %s" % json.dumps(body))
        same(s, r.json()["id"], "submitted %s" % json.dumps(body), r.body)
    r = s.request("POST", "/jobs", json={"type": "t", "queue": q, "delay": 0.05, "priority": 3})
    d = r.json()["id"]
    j = same(s, d, "submitted with a delay", r.body)
    check(j["run_at"] is not None, "run_at of a delayed job", j)
    time.sleep(0.1)
    # claim: promotion (N = 0), then claim; log's progress; a failed attempt with attempts left
    w.claim(tag, 0)
    j = same(s, d, "promoted")
    eq((j["status"], j["run_at"]), ("queued", None), "the promoted job")
    fence = _claim_one(w, tag, d)   # priority 3 runs before -7
    same(s, d, "claimed")
    eq(w.log(d, fence, "37", "stdout", "a line"), [1, 0], "log.lua")
    eq(same(s, d, "progress")["progress"], 37, "progress")
    eq(w.complete(d, fence, "failed", "exit status 1: " + NASTY), [1, "queued"], "complete failed")
    j = same(s, d, "failed with attempts left")
    eq(j["error"], "exit status 1: " + NASTY, "the error, every odd character kept")
    time.sleep(0.05)   # retry base 1 ms: due now
    fence = _claim_one(w, tag, d)
    eq(w.complete(d, fence, "done", '{"r": [1, "%s"], "n":null}' % "é/\\n"), [1, "done"],
       "complete done")
    j = same(s, d, "done")
    eq(j["result"], {"r": [1, "é/\n"], "n": None}, "the result, spliced raw")
    # a running job: cancel requested (202), then the worker stops it
    fence = _claim_one(w, tag, a)
    r = s.request("POST", "/jobs/%s/cancel" % a)
    eq(r.status, 202, "cancel of a running job")
    same(s, a, "cancel requested", r.body)
    r = s.request("POST", "/jobs/%s/cancel" % a)
    same(s, a, "cancel requested again", r.body)
    eq(w.complete(a, fence, "failed", "killed by signal 15"), [1, "cancelled"], "complete")
    same(s, a, "cancelled by its worker")
    # admin retry of the cancelled job, then requeue (worker stopping), then worker lost
    r = s.request("POST", "/jobs/%s/retry" % a)
    eq(r.status, 200, "retry")
    j = same(s, a, "retried", r.body)
    eq((j["status"], j["attempts"], j["error"]), ("queued", 0, None), "the retried job")
    fence = _claim_one(w, tag, a)
    eq(w.complete(a, fence, "requeue"), [1, "queued"], "complete requeue")
    same(s, a, "queued again by a stopping worker")
    _claim_one(w, tag, a, lease_ms=1)
    time.sleep(0.05)
    eq(w.claim(tag, 0)[1], 1, "taken back")
    j = same(s, a, "taken back (worker lost)")
    eq((j["status"], j["error"]), ("queued", "worker lost"), "the job taken back, to be retried")
    time.sleep(0.05)
    fence = _claim_one(w, tag, a)   # its last attempt
    eq(w.complete(a, fence, "failed", "timeout after 1 s"), [1, "failed"], "complete failed")
    j = same(s, a, "failed on its last attempt")
    # a queued job cancelled (200); retry-failed of the queue
    r = s.request("POST", "/jobs", json={"type": "t", "queue": q})
    c = r.json()["id"]
    r = s.request("POST", "/jobs/%s/cancel" % c)
    eq(r.status, 200, "cancel of a queued job")
    same(s, c, "cancelled while queued", r.body)
    r = s.request("POST", "/queues/%s/retry-failed" % q)
    eq((r.status, r.json()), (200, {"retried": 1}), "retry-failed")
    same(s, a, "retried with its queue")
    # the listing shows the same objects
    r = s.request("GET", "/jobs?queue=%s&limit=10" % q)
    eq(r.status, 200, "listing")
    shown = {j["id"]: j for j in r.json()["jobs"]}
    for jid in (a, c, d):
        eq(json.dumps(shown[jid]).encode(), json.dumps(json.loads(expected(_fields(s, jid)))).encode(),
           "the listing's object of %s" % jid)
    check(r.body.count(expected(_fields(s, c))) == 1, "the listing copies the stored text", r.body)


def test_cached_and_coalesced_submits_answer_the_one_rendering():
    s = stack()
    q = unique_queue("rcache")
    body = {"type": "t", "queue": q, "cache": True, "payload": {"k": NASTY}}
    r = s.request("POST", "/jobs", json=body)
    eq(r.status, 202, "first submit with cache")
    first = r.json()["id"]
    same(s, first, "submitted with cache", r.body)
    r = s.request("POST", "/jobs", json=body)
    eq((r.status, r.json()["id"]), (202, first), "an identical submit coalesces")
    same(s, first, "the coalesced job", r.body, b',"coalesced":true')
    key = r.json()["cache_key"]
    r = s.request("PUT", "/cache/" + key, body='{"from":"cache","s":"\\u00e9/"}',
                  headers={"Content-Type": "application/json"})
    eq(r.status, 204, "PUT of the cache entry")
    r = s.request("POST", "/jobs", json=dict(body, queue=unique_queue("rcache2")))
    eq(r.status, 200, "a cache hit")
    j = same(s, r.json()["id"], "created from the cache", r.body)
    eq((j["status"], j["cached"], j["result"]), ("done", True, {"from": "cache", "s": "é/"}),
       "the cached job")


def test_a_job_stored_before_the_json_field_or_changed_without_it_is_shown_the_same():
    # jobs written by scripts older than the `json` field (an upgrade with jobs in Redis), or
    # whose object is older than their version, are read field by field and formatted by the
    # programs with the same rules
    s = stack()
    q = unique_queue("rold")
    w = _Worker(s, q)
    jid = s.request("POST", "/jobs", json={"type": "t", "queue": q}).json()["id"]
    fence = _claim_one(w, jid[:8], jid)
    w.complete(jid, fence, "failed", NASTY)   # max_attempts 3: queued again, with an error
    want = expected(_fields(s, jid))
    s.redis("HDEL", _key(jid), "json")
    r = s.request("GET", "/jobs/" + jid)
    eq((r.status, r.body), (200, want), "GET of a job without `json`")
    r = s.request("GET", "/jobs?queue=" + q)
    eq(r.json()["jobs"], [json.loads(want)], "the listing of a job without `json`")
    # a job changed by a writer that did not render it: the stored object is of an older
    # version, so the fields are shown
    s.redis("HSET", _key(jid), "json", want)
    s.redis("HINCRBY", _key(jid), "version", 1)
    r = s.request("GET", "/jobs/" + jid)
    eq((r.status, r.body), (200, expected(_fields(s, jid))), "GET of a job whose object is stale")
    r = s.request("POST", "/jobs/%s/cancel" % jid)
    eq(r.status, 200, "cancel of a job without `json`")
    same(s, jid, "cancelled: rendered again", r.body)


def test_times_on_the_calendar_edges_are_rendered_as_the_contract_says():
    # the renderer's own date arithmetic (days since the epoch -> civil date): the epoch, the last
    # and first ms of days around leap days (2000 is a leap year, 2100 is not), of years and of
    # the year 9999; each instant put in a running job's times, then rendered by cancel.lua
    s = stack()
    q = unique_queue("rtime")
    w = _Worker(s, q)
    day = 86400000
    instants = [0, 1, day - 1, day, 951782400000 - 1, 951782400000, 951868800000 - 1,
                951868800000, 978307200000 - 1, 978307200000, 1709164800000, 1735689600000 - 1,
                4107456000000 - 1, 4107456000000, 4107542400000, 253402300800000 - 1]
    jobs = [s.request("POST", "/jobs", json={"type": "t", "queue": q}).json()["id"]
            for _ in range(len(instants) // 4)]
    rep = w.claim(jobs[0][:8], len(jobs))
    eq(sorted(j[0] for j in rep[3:]), sorted(jobs), "the jobs claimed")
    for n, jid in enumerate(jobs):
        times = instants[4 * n:4 * n + 4]
        s.redis("HSET", _key(jid), "created_at", times[0], "started_at", times[1],
                "finished_at", times[2], "run_at", times[3])
        r = s.request("POST", "/jobs/%s/cancel" % jid)
        eq(r.status, 202, "cancel of a running job")
        same(s, jid, "times %r" % times, r.body)
        eq([r.json()[k] for k in ("created_at", "started_at", "finished_at", "run_at")],
           [_time(t).decode().strip('"') for t in times], "the times cancel.lua rendered")


def _submitted_parts(jid, queue, priority, second, cache_key):
    """The job object jobgate-submit renders for a job queued at once, cut as submit.lua takes it
    (ARGV[10], ARGV[11]): the text up to created_at's second (its clock at `second`), the text
    from its closing 'Z"' on."""
    fields = {b"id": jid.encode(), b"queue": queue.encode(), b"type": b"t", b"status": b"queued",
              b"priority": b"%d" % priority, b"attempts": b"0", b"max_attempts": b"3",
              b"created_at": b"%d123" % second, b"cache_key": cache_key.encode(), b"version": b"1"}
    text = expected(fields).decode()
    cut = text.index('"created_at":') + len('"created_at":')
    return text[:cut + 21], text[cut + 24:]


def _submit_script(s, queue):
    """(the queue's tag, submit.lua's SHA-1 loaded from the work tree), a job made first."""
    tag = s.request("POST", "/jobs", json={"type": "t", "queue": queue}).json()["id"][:8]
    with open(os.path.join(harness.ROOT, "redis", "submit.lua"), "rb") as fh:
        return tag, s.redis("SCRIPT", "LOAD", fh.read())


def test_a_submit_stores_redis_time_whichever_second_the_callers_clock_was_in():
    # jobgate-submit renders a job queued at once with its own clock's created_at cut after the
    # second (submit.lua's ARGV[10..12]); the script keeps that text only when Redis' clock is in
    # the same second, else renders created_at itself: either way the stored object shows
    # Redis' time, and the answer is that time. submit.lua called as jobgate-submit calls it.
    s = stack()
    q = unique_queue("rclock")
    tag, sha = _submit_script(s, q)
    P = "jobgate:{%s}:" % tag

    def submit(n, second):
        jid = "%s.clock%017d" % (tag, n)   # a valid id: 22 base64url characters
        before, after = _submitted_parts(jid, q, 0, second, "0" * 64)
        at = s.redis("EVALSHA", sha, 2, P + "job:" + jid, P + "q:%s:ready:t" % q, jid, q, "t",
                     "{}", 0, 3, 300000, 0, "0" * 64, before, after, str(second))
        f = _fields(s, jid)
        eq(abs(at), int(f[b"created_at"]), "the answer is the stored created_at")
        same(s, jid, "submitted with the caller's clock at second %d" % second)
        return jid, abs(at)

    # a clock in another second (2001): its text is not kept
    jid, at = submit(0, 1000000000)
    check(abs(at / 1000 - time.time()) < 60, "created_at is Redis' time, not the caller's", at)
    eq(s.request("GET", "/jobs/" + jid).json()["created_at"][:4],
       time.strftime("%Y", time.gmtime(at / 1000)), "the year shown")
    # a clock in Redis' second: only the ms joined in (a boundary between TIME and the script
    # makes it the case above, so a few tries)
    for n in range(1, 6):
        second = int(s.redis("TIME")[0])
        jid, at = submit(n, second)
        if at // 1000 == second:
            break
    eq(at // 1000, second, "a submit within the caller's second")


def test_a_submit_call_of_several_jobs_stores_each_as_a_call_of_one_would():
    # jobgate-submit folds the plain submits of one queue and type that arrive together into one
    # submit.lua call: the first job's 12 arguments, then 8 for each further job (docs/redis.md,
    # "submit.lua"). Each job is stored as a call of its own would store it, with Redis' time
    # (whichever second the caller's clock was in), in the ready set by priority then arrival, in
    # the index, counted, its log showing "queued"; the answer is their created_at.
    s = stack()
    q = unique_queue("rmany")
    tag, sha = _submit_script(s, q)
    P, Q = "jobgate:{%s}:" % tag, "jobgate:{%s}:q:%s:" % (tag, q)

    def args(jid, priority, second, first):
        before, after = _submitted_parts(jid, q, priority, second, "%064d" % priority)
        if first:
            return [jid, q, "t", '{"p":%d}' % priority, priority, 3, 300000, 0, "%064d" % priority,
                    before, after, str(second)]
        return [jid, '{"p":%d}' % priority, priority, 3, 300000, "%064d" % priority, before,
                after]

    def call(round_no, priorities, second):
        ids = ["%s.many%02d%016d" % (tag, round_no, i) for i in range(len(priorities))]
        argv = args(ids[0], priorities[0], second, True)
        for jid, p in zip(ids[1:], priorities[1:]):
            argv += args(jid, p, second, False)
        seq, counted = int(s.redis("GET", Q + "seq")), int(s.redis("HGET", Q + "counts",
                                                                      "submitted:t"))
        at = s.redis("EVALSHA", sha, 2, P + "job:" + ids[0], Q + "ready:t", *argv)
        what = "round %d (caller's second %d)" % (round_no, second)
        eq(int(s.redis("GET", Q + "seq")), seq + len(ids), what + ": the queue's seq")
        eq(int(s.redis("HGET", Q + "counts", "submitted:t")), counted + len(ids),
           what + ": the type's count")
        for i, jid in enumerate(ids):
            f = _fields(s, jid)
            eq(abs(at), int(f[b"created_at"]), what + ": job %d's created_at is the answer" % i)
            eq(f[b"payload"], b'{"p":%d}' % priorities[i], what + ": job %d's payload" % i)
            same(s, jid, "%s: job %d" % (what, i))
            eq(s.request("GET", "/jobs/" + jid).json()["priority"], priorities[i],
               what + ": job %d read over HTTP" % i)
            log = s.request("GET", "/jobs/%s/logs" % jid).json()["entries"]
            eq([(e["id"], e["stream"], e["line"]) for e in log],
               [("%d-0" % abs(at), "system", "queued")], what + ": job %d's log" % i)
            check(s.redis("ZSCORE", Q + "jobs", jid) is not None, what + ": job %d indexed" % i)
        ready = [m for m in s.redis("ZRANGE", Q + "ready:t", 0, -1) if m in set(ids)]
        eq(ready, [ids[i] for i in sorted(range(len(ids)), key=lambda i: -priorities[i])],
           what + ": the ready set's order (priority, then the order in the call)")
        return abs(at)

    at = call(0, [0, 5, 0, -3, 5], 1000000000)   # a caller's clock in 2001: rendered by the script
    check(abs(at / 1000 - time.time()) < 60, "created_at is Redis' time, not the caller's", at)
    for n in range(1, 6):   # the caller's clock in Redis' second: only the ms joined in
        second = int(s.redis("TIME")[0])
        if call(n, [1, 2, 1], second) // 1000 == second:
            break
    # further jobs ride only a first queued at once: a delayed first is refused, nothing written
    seq = s.redis("GET", Q + "seq")
    first = args(tag + ".manydelay00000000000000", 0, 1000000000, True)
    first[7] = 5000
    try:
        s.redis("EVALSHA", sha, 2, P + "job:" + first[0], Q + "ready:t",
                *(first + args(tag + ".manydelay00000000000001", 0, 1000000000, False)))
        check(False, "expected further jobs after a delayed first refused")
    except harness.RedisError as e:
        check("further jobs" in str(e), "expected submit.lua's error", str(e))
    eq(s.redis("GET", Q + "seq"), seq, "the seq after the refused call")
    eq(s.redis("EXISTS", P + "job:" + first[0]), 0, "the refused call's first job")
