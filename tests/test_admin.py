"""jobgate-admin through nginx (contract section 7): /health, /stats, /queues, /metrics (parsed
with prometheus_client and checked by promtool), the job listing and its paging, retry, delete,
queue pause/resume/retry-failed, and the retention of the job indexes (issue 9, finding 6)."""

import os
import signal
import subprocess
import tempfile
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

import harness
from harness import JOB_FIELDS, check, eq, expect_error, stack, unique_queue

# HTTP suite: runs behind nginx and again behind Apache (run.py)
FRONTS = harness.FRONTS

P = "jobgate"   # the default JOBGATE_KEY_PREFIX
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


# ---- helpers ---------------------------------------------------------------------------------

def get_json(s, path, status=200):
    r = s.request("GET", path)
    eq(r.status, status, "HTTP status of GET %s (body %r)" % (path, r.body[:300]))
    eq(r.headers.get("Content-Type", "").split(";")[0], "application/json", "Content-Type of " + path)
    return r.json()


def queue_entry(stats, q):
    found = [x for x in stats["queues"] if x["name"] == q]
    eq(len(found), 1, "entries for queue %s in %r" % (q, [x["name"] for x in stats["queues"]]))
    return found[0]


def metrics(s, program_n=None):
    """GET /metrics (through nginx, or straight to admin process n): the text, parsed."""
    if program_n is None:
        r = s.request("GET", "/metrics")
    else:
        r = s.fcgi("admin", "GET", "/api/metrics", n=program_n)
    eq(r.status, 200, "HTTP status of GET /metrics")
    eq(r.headers.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8",
       "Content-Type of /metrics")
    text = r.body.decode()
    p = subprocess.run(["promtool", "check", "metrics"], input=r.body, capture_output=True,
                       timeout=30)
    eq((p.returncode, p.stdout + p.stderr), (0, b""), "promtool check metrics on /metrics")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return fams


def sample(fams, family, name, **labels):
    """The value of the one sample name{labels} of family (None if absent)."""
    vals = [sm.value for sm in fams[family].samples
            if sm.name == name and all(sm.labels.get(k) == v for k, v in labels.items())]
    check(len(vals) <= 1, "at most one sample %s%r" % (name, labels), vals)
    return vals[0] if vals else None


def walk(s, query, limit, during=None):
    """Every page of GET /jobs?query&limit=...; during(i) is called after page i. Returns the
    ids in the order listed and the number of pages."""
    ids, cursor, pages = [], None, 0
    while True:
        path = "/jobs?%slimit=%d" % (query + "&" if query else "", limit)
        if cursor:
            path += "&cursor=" + cursor
        page = get_json(s, path)
        check(set(page) == {"jobs", "next"}, "a listing page has jobs and next", list(page))
        check(len(page["jobs"]) <= limit, "a page holds at most limit jobs", len(page["jobs"]))
        for j in page["jobs"]:
            eq(list(j), list(JOB_FIELDS), "members of a listed job")
        ids += [j["id"] for j in page["jobs"]]
        pages += 1
        if during:
            during(pages)
        cursor = page["next"]
        if cursor is None:
            return ids, pages
        check(pages < 1000, "the walk ends")


def submit_many(s, n, threads=4, **fields):
    """n jobs submitted over `threads` connections; returns their ids."""
    out, lock = [], threading.Lock()
    errors = []

    def run(k):
        try:
            for _ in range(k):
                jid = s.submit(**fields)["id"]
                with lock:
                    out.append(jid)
        except Exception as e:   # reported below, in the test's thread
            errors.append(e)
    ts = [threading.Thread(target=run, args=(n // threads + (1 if i < n % threads else 0),))
          for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return out


def marker_type(d):
    """A job type that fails until the file d/ok exists, then is done."""
    return {"once": "test -f %s/ok || { echo not yet >&2; exit 1; }" % d}


# ---- /health -----------------------------------------------------------------------------------

def test_health_answers_ok_with_redis_latency_and_version():
    s = stack()
    for method in ("GET", "HEAD"):
        r = s.request(method, "/health")
        eq(r.status, 200, "%s /health" % method)
        eq(r.headers.get("X-Content-Type-Options"), "nosniff", "nosniff on /health")
    h = get_json(s, "/health")
    eq(sorted(h), ["redis", "status", "version"], "members of /health")
    eq(h["status"], "ok", "status")
    eq(h["redis"]["ok"], True, "redis.ok")
    check(isinstance(h["redis"]["latency_ms"], float) and h["redis"]["latency_ms"] >= 0,
          "redis.latency_ms is a number of milliseconds", h["redis"])
    out = subprocess.run([harness.binary("admin"), "--version"], capture_output=True, text=True)
    check(h["version"] in out.stdout, "version is the program's --version", (h["version"], out.stdout))


@harness.single_redis_only("stops the one Redis; on a cluster a master is killed instead "
                           "(cluster.a_master_killed_is_replaced_by_its_replica_with_no_restart)")
def test_health_is_503_while_redis_is_stopped_and_200_again_after():
    with harness.Stack(programs=("submit", "status", "admin"), name="admhealth") as s:
        eq(s.request("GET", "/health").status, 200, "/health with Redis up")
        s.stop_redis()
        r = s.request("GET", "/health")
        eq(r.status, 503, "/health with Redis stopped")
        eq(r.json()["status"], "unavailable", "status with Redis stopped")
        eq(r.json()["redis"]["ok"], False, "redis.ok with Redis stopped")
        eq(r.headers.get("Retry-After"), "1", "Retry-After with Redis stopped")
        expect_error(s.request("GET", "/stats"), 503, "unavailable")
        s.start_redis()
        # each request thread has its own connection, retried with backoff (at most 2 s): once
        # Redis is back, every thread answers 200 within that
        back = []
        harness.wait_until(lambda: back.append(s.request("GET", "/health")) or
                           back[-1].status == 200, 10, "/health to answer 200 once Redis is back")
        eq(back[-1].json()["status"], "ok", "status once Redis is back")
        time.sleep(2.5)
        for i in range(20):
            eq(s.request("GET", "/health").status, 200, "/health %d, 2.5 s after Redis is back" % i)


# ---- routes and errors ---------------------------------------------------------------------------

def test_unknown_admin_routes_are_404_and_wrong_methods_405():
    s = stack()
    for m, path in (("GET", "/statistics"), ("GET", "/queues/default"), ("POST", "/queues/x/stop"),
                    ("GET", "/metrics/x"), ("POST", "/queues//pause")):
        with s.unchanged("%s %s" % (m, path)):
            expect_error(s.request(m, path), 404, "not_found")
    jid = s.submit(type="echo", queue=unique_queue())["id"]
    for m, path, allow in (("POST", "/health", "GET"), ("DELETE", "/stats", "GET"),
                           ("PUT", "/metrics", "GET"), ("POST", "/queues", "GET"),
                           ("GET", "/queues/default/pause", "POST"),
                           ("DELETE", "/queues/default/resume", "POST"),
                           ("GET", "/queues/default/retry-failed", "POST"),
                           ("GET", "/jobs/%s/retry" % jid, "POST")):
        with s.unchanged("%s %s" % (m, path)):
            r = s.request(m, path)
            expect_error(r, 405, "method_not_allowed")
            allow_list = [a.strip() for a in r.headers.get("Allow", "").split(",")]
            check(allow in allow_list, "%s %s: Allow lists %s" % (m, path, allow),
                  r.headers.get("Allow"))


def test_bad_listing_filters_are_400_naming_the_field_and_change_nothing():
    s = stack()
    for query, field in (("queue=Bad!", "queue"), ("queue=", "queue"), ("type=UPPER", "type"),
                         ("status=lost", "status"), ("status=", "status"), ("limit=0", "limit"),
                         ("limit=501", "limit"), ("limit=ten", "limit"), ("limit=-1", "limit"),
                         ("cursor=abc", "cursor"), ("cursor=12-not-an-id", "cursor"),
                         ("cursor=-37a8eec1.AAAAAAAAAAAAAAAAAAAAAA", "cursor"),
                         ("queue=" + "a" * 65, "queue")):
        with s.unchanged("GET /jobs?" + query):
            expect_error(s.request("GET", "/jobs?" + query), 400, "invalid_field", field)
    for path in ("/queues/Bad!/pause", "/queues/-x/resume", "/queues/A/retry-failed"):
        with s.unchanged("POST " + path):
            expect_error(s.request("POST", path), 400, "invalid_field", "queue")


def test_listing_an_unknown_queue_is_an_empty_list():
    s = stack()
    eq(get_json(s, "/jobs?queue=" + unique_queue("none")), {"jobs": [], "next": None},
       "listing of a queue nobody used")


def test_retry_and_delete_of_unknown_or_malformed_jobs_are_404():
    s = stack()
    for jid in ("37a8eec1.AAAAAAAAAAAAAAAAAAAAAA", "nope", "..", "x" * 80):
        with s.unchanged("retry/delete " + jid):
            expect_error(s.request("POST", "/jobs/%s/retry" % jid), 404, "not_found")
            expect_error(s.request("DELETE", "/jobs/" + jid), 404, "not_found")


# ---- /stats, /queues, /metrics -------------------------------------------------------------------

def _known_sequence(s, q):
    """On queue q: 3 echo done, 2 fail failed, 2 sleep cancelled, and an echo with cache: true
    run once, then answered from the cache once."""
    done = [s.submit(type="echo", queue=q, payload={"i": i})["id"] for i in range(3)]
    failed = [s.submit(type="fail", queue=q, max_attempts=1, payload={"message": "no"})["id"]
              for _ in range(2)]
    cancelled = [s.submit(type="sleep", queue=q, delay=600)["id"] for _ in range(2)]
    for jid in cancelled:
        eq(s.request("POST", "/jobs/%s/cancel" % jid).status, 200, "cancel of a delayed job")
    first = s.request("POST", "/jobs", json={"type": "echo", "queue": q, "cache": True,
                                             "payload": {"q": q}})
    eq(first.status, 202, "the first cache: true submit")
    for jid in done + failed + [first.json()["id"]]:
        s.wait_status(jid, ("done", "failed"))
    # the worker stores the result right after complete.lua: wait for the entry
    harness.wait_until(lambda: s.redis("EXISTS", "%s:cache:%s" % (P, first.json()["cache_key"])),
                       10, "the cache entry")
    hit = s.request("POST", "/jobs", json={"type": "echo", "queue": q, "cache": True,
                                           "payload": {"q": q}})
    eq((hit.status, hit.json()["cached"]), (200, True), "the second cache: true submit")


def test_stats_and_metrics_agree_with_a_known_sequence_of_jobs_and_across_admin_processes():
    with harness.Stack(programs=("submit", "status", "cache", "admin"), name="admstats") as s:
        q = unique_queue()
        s.start_program("admin", n=1)
        harness.wait_until(lambda: harness.accepts(s.sock("admin", 1)), 10, "second admin socket")
        w = s.start_worker(queues=[q], concurrency=2)
        _known_sequence(s, q)
        st = get_json(s, "/stats")
        eq(sorted(st), ["cache", "queues", "totals", "workers"], "members of /stats")
        e = queue_entry(st, q)
        eq({k: e[k] for k in ("queued", "running", "delayed", "paused", "submitted", "done",
                              "failed", "cancelled")},
           {"queued": 0, "running": 0, "delayed": 0, "paused": False, "submitted": 9, "done": 5,
            "failed": 2, "cancelled": 2}, "the queue's figures")
        eq(e["types"], {"echo": {"submitted": 5, "done": 5, "failed": 0, "cancelled": 0},
                        "fail": {"submitted": 2, "done": 0, "failed": 2, "cancelled": 0},
                        "sleep": {"submitted": 2, "done": 0, "failed": 0, "cancelled": 2}},
           "per type")
        eq(st["totals"], {"submitted": 9, "done": 5, "failed": 2, "cancelled": 2}, "totals")
        eq(st["cache"], {"hits": 1, "misses": 1}, "cache counters")
        eq(len(st["workers"]), 1, "live workers")
        wk = st["workers"][0]
        eq((wk["pid"], wk["queues"], wk["concurrency"]), (w.pid, [q], 2), "the worker's entry")
        check(sorted(wk["types"]) == sorted(harness.DEMO_TYPES) and wk["host"] and
              harness.RFC3339_MS.match(wk["last_seen"]), "the worker's types, host, last_seen", wk)
        eq(get_json(s, "/queues"), {"queues": st["queues"]}, "/queues is the per-queue part")

        # the second admin process answers the same figures
        r = s.fcgi("admin", "GET", "/api/stats", n=1)
        eq(r.status, 200, "/stats of the second admin process")
        other = r.json()
        eq(queue_entry(other, q), e, "the queue's entry from the second admin process")
        eq((other["totals"], other["cache"]), (st["totals"], st["cache"]),
           "totals and cache from the second admin process")

        for n in (None, 1):
            fams = metrics(s, n)
            for t, sub in (("echo", 5), ("fail", 2), ("sleep", 2)):
                eq(sample(fams, "jobgate_jobs_submitted", "jobgate_jobs_submitted_total",
                          queue=q, type=t), sub, "submitted_total of %s" % t)
            for t, status, v in (("echo", "done", 5), ("fail", "failed", 2),
                                 ("sleep", "cancelled", 2), ("echo", "failed", 0)):
                eq(sample(fams, "jobgate_jobs_finished", "jobgate_jobs_finished_total",
                          queue=q, type=t, status=status), v, "finished_total %s %s" % (t, status))
            for state in ("queued", "running", "delayed"):
                eq(sample(fams, "jobgate_queue_jobs", "jobgate_queue_jobs", queue=q, state=state),
                   0, "queue_jobs %s" % state)
            eq(sample(fams, "jobgate_queue_latency_seconds", "jobgate_queue_latency_seconds",
                      queue=q), 0, "latency with nothing ready")
            eq(sample(fams, "jobgate_workers", "jobgate_workers"), 1, "jobgate_workers")
            eq(sample(fams, "jobgate_cache_requests", "jobgate_cache_requests_total", result="hit"),
               1, "cache hits")
            eq(sample(fams, "jobgate_cache_requests", "jobgate_cache_requests_total",
                      result="miss"), 1, "cache misses")
            eq(fams["jobgate_job_run_seconds"].type, "histogram", "type of jobgate_job_run_seconds")
            # every attempt that ran: 3 + 1 echo, 2 fail (the cached one and the cancelled never ran)
            eq(sample(fams, "jobgate_job_run_seconds", "jobgate_job_run_seconds_count", queue=q,
                      type="echo"), 4, "run count of echo")
            eq(sample(fams, "jobgate_job_run_seconds", "jobgate_job_run_seconds_count", queue=q,
                      type="fail"), 2, "run count of fail")


def test_queue_latency_is_the_age_of_the_oldest_ready_job():
    s = stack()
    q = unique_queue()
    s.submit(type="echo", queue=q)
    time.sleep(1.2)
    s.submit(type="echo", queue=q)
    e = queue_entry(get_json(s, "/stats"), q)
    eq((e["queued"], e["running"], e["delayed"]), (2, 0, 0), "two jobs ready, none claimed")
    check(1.2 <= e["latency"] < 30, "latency: the older job has waited at least 1.2 s", e["latency"])
    fams = metrics(s)
    check(sample(fams, "jobgate_queue_latency_seconds", "jobgate_queue_latency_seconds",
                 queue=q) >= 1.2, "jobgate_queue_latency_seconds at least 1.2", fams)
    eq(sample(fams, "jobgate_queue_jobs", "jobgate_queue_jobs", queue=q, state="queued"), 2,
       "queue_jobs queued")


def test_histogram_counts_and_sums_match_the_jobs_run_times():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q], concurrency=4)
    ms = (5, 40, 150, 400, 700, 1200)
    ids = [s.submit(type="sleep", queue=q, payload={"ms": m, "steps": 1})["id"] for m in ms]
    runs = []
    for jid in ids:
        j = s.wait_status(jid, "done")
        # the job object's times are milliseconds, as complete.lua counts them
        runs.append(harness_ms(j["finished_at"]) - harness_ms(j["started_at"]))
    fams = metrics(s)
    count = sample(fams, "jobgate_job_run_seconds", "jobgate_job_run_seconds_count", queue=q,
                   type="sleep")
    total = sample(fams, "jobgate_job_run_seconds", "jobgate_job_run_seconds_sum", queue=q,
                   type="sleep")
    eq(count, len(ms), "histogram count")
    check(abs(total - sum(runs) / 1000.0) < 1e-6, "histogram sum is the sum of the run times "
          "(finished_at - started_at) %r" % runs, total)
    buckets = {sm.labels["le"]: sm.value for sm in fams["jobgate_job_run_seconds"].samples
               if sm.name == "jobgate_job_run_seconds_bucket" and sm.labels.get("queue") == q}
    eq(len(buckets), len(BUCKETS) + 1, "buckets, +Inf included")
    for le, got in buckets.items():
        bound = float(le)   # "+Inf" too
        eq(got, sum(1 for r in runs if r <= bound * 1000), "bucket le=%s (runs %r ms)" % (le, runs))


def harness_ms(ts):
    """RFC 3339 with milliseconds -> ms since the epoch."""
    import calendar
    base = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
    return base * 1000 + int(ts[20:23])


def test_stats_takes_back_the_job_of_a_dead_worker_on_a_queue_no_worker_serves():
    s = stack()
    q = unique_queue()
    a = s.start_worker(queues=[q], types={"t": "sleep 60"}, env={"JOBGATE_LEASE": "2"})
    job = s.submit(type="t", queue=q, max_attempts=1)
    s.wait_status(job["id"], "running")
    a.proc.expected_exit = True
    os.kill(a.pid, signal.SIGKILL)
    time.sleep(2.5)   # the lease (2 s) runs out; no worker is left to take it back
    e = queue_entry(get_json(s, "/stats"), q)
    eq(e["running"], 0, "running jobs of the queue after /stats")
    j = s.job(job["id"])
    eq((j["status"], j["error"]), ("failed", "worker lost"), "the job after /stats")


def test_stats_drops_workers_whose_heartbeat_is_gone():
    s = stack()
    ghost = "ghost-" + os.urandom(4).hex()
    s.redis("ZADD", P + ":workers", str(int(time.time() * 1000)), ghost)
    st = get_json(s, "/stats")
    check(ghost not in [w["id"] for w in st["workers"]], "a worker without heartbeat is not shown",
          st["workers"])
    eq(s.redis("ZSCORE", P + ":workers", ghost), None, "the dead worker's member of P:workers")


# ---- the listing -----------------------------------------------------------------------------

def test_paging_over_1234_jobs_while_200_more_arrive_returns_each_older_job_once():
    s = stack()
    q1, q2 = unique_queue("pa"), unique_queue("pb")
    jtype = "pg" + os.urandom(3).hex()
    queue_of = {}
    for q in (q1, q2):
        queue_of.update((i, q) for i in submit_many(s, 617, type=jtype, queue=q))
    newer = []

    def arrive(page):   # 200 more arrive while the walk goes on, over its first pages
        if page <= 10:
            q = q1 if page % 2 else q2
            ids = submit_many(s, 20, threads=2, type=jtype, queue=q)
            newer.extend(ids)
            queue_of.update((i, q) for i in ids)

    for query, queues, lim in (("type=" + jtype, (q1, q2), 100),
                               ("queue=%s&type=%s" % (q1, jtype), (q1,), 77)):
        older = {i for i, q in queue_of.items() if q in queues}   # there before the walk
        newer.clear()
        ids, pages = walk(s, query, lim, arrive)
        eq(len(newer), 200, "jobs that arrived during the walk")
        eq(len(ids), len(set(ids)), "no job listed twice (%s)" % query)
        eq(len([i for i in ids if i in older]), len(older), "older jobs listed (%s)" % query)
        stray = set(ids) - older - set(newer)
        eq(stray, set(), "jobs listed that were not submitted to the queues walked")
    # newest first: created_at never grows down the pages
    ids, _ = walk(s, "queue=" + q2, 500)
    created = [s.job(i)["created_at"] for i in ids[:60]]
    eq(created, sorted(created, reverse=True), "created_at of the first listed jobs, newest first")


def test_listing_filters_combine_and_show_only_matching_jobs():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q])
    # "newest first" is by created_at (ms): jobs made in one millisecond may list in either
    # order, so these are made a few ms apart
    done = s.submit(type="echo", queue=q)["id"]
    time.sleep(0.01)
    failed = s.submit(type="fail", queue=q, max_attempts=1)["id"]
    s.wait_status(done, "done")
    s.wait_status(failed, "failed")
    queued = s.submit(type="sleep", queue=q, delay=600)["id"]
    for query, expect in (("queue=%s" % q, [queued, failed, done]),
                          ("queue=%s&status=done" % q, [done]),
                          ("queue=%s&status=failed&type=fail" % q, [failed]),
                          ("queue=%s&status=failed&type=echo" % q, []),
                          ("queue=%s&type=sleep" % q, [queued]),
                          ("queue=%s&status=queued" % q, [queued])):
        ids, _ = walk(s, query, 50)
        eq(ids, expect, "GET /jobs?" + query)
    page = get_json(s, "/jobs?queue=%s&limit=1" % q)
    eq([j["id"] for j in page["jobs"]], [queued], "limit=1: the newest")
    eq(page["jobs"][0], s.job(queued), "a listed job is the job object of GET /jobs/{id}")
    check(page["next"], "a next cursor while more remain", page)


# ---- retry, delete -----------------------------------------------------------------------------

def test_retry_of_failed_and_cancelled_jobs_runs_them_again():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)
        s.start_worker(queues=[q], types=dict(marker_type(d), sleep=os.path.join(
            harness.JOBS_DIR, "sleep.sh")))
        f = s.submit(type="once", queue=q, max_attempts=1)["id"]
        failed = s.wait_status(f, "failed")
        c = s.submit(type="sleep", queue=q, delay=600, payload={"ms": 1, "steps": 1})["id"]
        eq(s.request("POST", "/jobs/%s/cancel" % c).status, 200, "cancel")
        q2 = s.submit(type="once", queue=q, delay=600)["id"]
        with s.unchanged("retry of a queued job"):
            expect_error(s.request("POST", "/jobs/%s/retry" % q2), 409, "conflict")
        open(os.path.join(d, "ok"), "w").close()
        for jid, was in ((f, failed), (c, None)):
            r = s.request("POST", "/jobs/%s/retry" % jid)
            eq(r.status, 200, "retry of a finished job (%r)" % r.body[:200])
            j = r.json()
            eq((j["status"], j["attempts"], j["error"], j["finished_at"]),
               ("queued", 0, None, None), "the job right after retry")
            done = s.wait_status(jid, "done")
            eq(done["attempts"], 1, "attempts of the run after retry")
            log = get_json(s, "/jobs/%s/logs?limit=1000" % jid)["entries"]
            check(any(e["stream"] == "system" and e["line"].startswith("queued again")
                      for e in log), "a system log entry says the job was queued again",
                  [e["line"] for e in log])
            check(s.redis("TTL", "%s:{%s}:log:%s" % (P, jid[:8], jid)) > 0,
                  "the log expires again once the job is done")
        with s.unchanged("retry of a done job"):
            expect_error(s.request("POST", "/jobs/%s/retry" % f), 409, "conflict")


def test_retry_failed_queues_every_failed_job_of_the_queue_again():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)
        s.start_worker(queues=[q], types=marker_type(d), concurrency=3)
        ids = [s.submit(type="once", queue=q, max_attempts=1)["id"] for _ in range(5)]
        for jid in ids:
            s.wait_status(jid, "failed")
        open(os.path.join(d, "ok"), "w").close()
        r = s.request("POST", "/queues/%s/retry-failed" % q)
        eq((r.status, r.json()), (200, {"retried": 5}), "retry-failed")
        for jid in ids:
            eq(s.wait_status(jid, "done")["attempts"], 1, "attempts after retry-failed")
        eq(s.request("POST", "/queues/%s/retry-failed" % q).json(), {"retried": 0},
           "retry-failed with no failed job")


def test_delete_removes_a_finished_job_and_its_log_and_refuses_unfinished_ones():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q])
    jid = s.submit(type="echo", queue=q)["id"]
    s.wait_status(jid, "done")
    waiting = s.submit(type="echo", queue=q, delay=600)["id"]
    with s.unchanged("DELETE of a queued job"):
        expect_error(s.request("DELETE", "/jobs/" + waiting), 409, "conflict")
    r = s.request("DELETE", "/jobs/" + jid)
    eq((r.status, r.body), (204, b""), "DELETE of a done job")
    expect_error(s.request("GET", "/jobs/" + jid), 404, "not_found")
    eq(s.redis("EXISTS", "%s:{%s}:log:%s" % (P, jid[:8], jid)), 0, "the log after DELETE")
    eq([j["id"] for j in get_json(s, "/jobs?queue=" + q)["jobs"]], [waiting],
       "the listing after DELETE")
    for idx in ("jobs", "expiry"):
        eq(s.redis("ZSCORE", "%s:{%s}:q:%s:%s" % (P, jid[:8], q, idx), jid), None,
           "the deleted job in the queue's %s index" % idx)
    expect_error(s.request("DELETE", "/jobs/" + jid), 404, "not_found")


# ---- pause, resume ---------------------------------------------------------------------------

def test_pause_stops_claims_and_resume_restarts_them():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q], concurrency=2)
    eq(s.wait_status(s.submit(type="echo", queue=q)["id"], "done")["status"], "done",
       "a job before the pause")
    r = s.request("POST", "/queues/%s/pause" % q)
    eq(r.status, 200, "pause")
    eq((r.json()["name"], r.json()["paused"]), (q, True), "the queue's stats after pause")
    ids = [s.submit(type="echo", queue=q)["id"] for _ in range(3)]
    time.sleep(2.0)   # two of the worker's once-a-second claims, and the wake messages
    eq([s.job(i)["status"] for i in ids], ["queued"] * 3, "jobs submitted to a paused queue")
    e = queue_entry(get_json(s, "/stats"), q)
    eq((e["paused"], e["queued"]), (True, 3), "paused and queued in /stats")
    eq(sample(metrics(s), "jobgate_queue_paused", "jobgate_queue_paused", queue=q), 1,
       "jobgate_queue_paused")
    r = s.request("POST", "/queues/%s/resume" % q)
    eq((r.status, r.json()["paused"]), (200, False), "resume")
    for i in ids:
        s.wait_status(i, "done", timeout=5)
    eq(queue_entry(get_json(s, "/stats"), q)["paused"], False, "paused after resume")


def test_pause_of_a_running_job_lets_it_finish():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q])
    jid = s.submit(type="sleep", queue=q, payload={"ms": 800, "steps": 2})["id"]
    s.wait_status(jid, "running")
    eq(s.request("POST", "/queues/%s/pause" % q).status, 200, "pause")
    eq(s.wait_status(jid, ("done", "failed", "cancelled"))["status"], "done",
       "a job running when the queue was paused")
    eq(s.request("POST", "/queues/%s/resume" % q).status, 200, "resume")


# ---- retention of the indexes (issue 9, finding 6) ---------------------------------------------

def _used_memory(s):
    info = s.redis("INFO", "memory")
    for line in info.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise AssertionError("no used_memory in INFO memory")


def test_5000_jobs_with_retention_3_leave_redis_back_near_its_baseline():
    env = {"JOBGATE_RETENTION": "3"}
    with harness.Stack(programs=("submit", "status", "admin"), name="admretain", env=env) as s:
        q = "default"
        for _ in range(2):   # the cheapest job there is: the stream, not the jobs, is the point
            s.start_worker(queues=[q], types={"noop": "true"}, concurrency=8)
        harness.wait_until(lambda: s.redis("ZCARD", P + ":workers") == 2, 10, "the workers' heartbeats")
        base_keys, base_mem = s.redis("DBSIZE"), _used_memory(s)
        submit_many(s, 5000, threads=6, type="noop", queue=q, payload={"pad": "x" * 200})
        harness.wait_until(lambda: queue_entry(get_json(s, "/stats"), q)["done"] == 5000, 100,
                           "all 5000 jobs done", interval=0.5)
        # the queue's own keys (seq, types, counts, runtime) and P:queues stay: a few keys
        harness.wait_until(lambda: s.redis("DBSIZE") <= base_keys + 6, 30,
                           "Redis' key count back near its baseline %d" % base_keys)
        eq(s.redis("ZCARD", "%s:{37a8eec1}:q:default:jobs" % P), 0, "the queue's job index")
        eq(s.redis("ZCARD", "%s:{37a8eec1}:q:default:expiry" % P), 0, "the queue's expiry index")
        mem = _used_memory(s)
        check(mem < base_mem + 512 * 1024, "used_memory back within 512 KiB of its baseline %d"
              % base_mem, mem)
        eq(get_json(s, "/jobs?queue=" + q), {"jobs": [], "next": None}, "the listing")


# ---- access (contract section 8) -------------------------------------------------------------

def test_admin_reads_need_a_read_token_writes_a_write_token_and_health_none():
    w, rd = "w-" + os.urandom(8).hex(), "r-" + os.urandom(8).hex()
    env = {"JOBGATE_API_TOKENS": w, "JOBGATE_READ_TOKENS": rd}
    with harness.Stack(programs=("submit", "status", "admin"), name="admtok", env=env) as s:
        auth = lambda t: {"Authorization": "Bearer " + t} if t else {}
        q = unique_queue()
        r = s.request("POST", "/jobs", json={"type": "echo", "queue": q, "delay": 600},
                      headers=auth(w))
        eq(r.status, 202, "submit with the write token")
        jid = r.json()["id"]
        eq(s.request("GET", "/health").status, 200, "/health without a token")
        for path in ("/stats", "/queues", "/metrics", "/jobs?queue=" + q):
            expect_error(s.request("GET", path), 401, "unauthorized")
            expect_error(s.request("GET", path, headers=auth("nope")), 401, "unauthorized")
            for t in (rd, w):   # a write token reads too
                eq(s.request("GET", path, headers=auth(t)).status, 200,
                   "GET %s with a %s token" % (path, "read" if t == rd else "write"))
        writes = (("POST", "/queues/%s/pause" % q, 200), ("POST", "/queues/%s/resume" % q, 200),
                  ("POST", "/queues/%s/retry-failed" % q, 200),
                  ("POST", "/jobs/%s/retry" % jid, 409), ("DELETE", "/jobs/" + jid, 409))
        for m, path, ok in writes:
            for t in (None, rd):
                with s.unchanged("%s %s with %s" % (m, path, "a read token" if t else "no token")):
                    expect_error(s.request(m, path, headers=auth(t)), 401, "unauthorized")
            eq(s.request(m, path, headers=auth(w)).status, ok, "%s %s with the write token"
               % (m, path))
