"""Submits that reach jobgate-submit together (server.c's batches: a request thread takes every
ready connection of one wake, 16 at most, and the plain submits among them go to Redis as one
pipelined write of their submit.lua calls): each gets exactly the answer it would get alone, no
job is made twice or half, and a Redis outage or a SCRIPT FLUSH costs them what it costs a lone
request.

To make requests arrive together, jobgate-submit is stopped (SIGSTOP) while they are sent, then
let go: every connection is then ready on its first wake."""

import hashlib
import json
import signal
import struct
import threading
import time

import harness
from harness import check, eq

# HTTP suite: runs behind nginx and again behind Apache, and on the cluster (run.py)
FRONTS = harness.FRONTS


def _tag(queue):
    return hashlib.sha256(queue.encode()).hexdigest()[:8]


def _job_key(jid):
    return "jobgate:{%s}:job:%s" % (jid[:8], jid)


def _ready(queue, type_="echo"):
    return "jobgate:{%s}:q:%s:ready:%s" % (_tag(queue), queue, type_)


def _post(body, headers=None):
    """The FastCGI bytes of POST /api/jobs with body (a dict is sent as JSON)."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return harness.fcgi_request_bytes(harness.fcgi_params("POST", "/api/jobs", body, h), body,
                                      keep_conn=True)


def _connections(s, n):
    """n kept-alive FastCGI connections to jobgate-submit, each having served one request."""
    conns = []
    for i in range(n):
        c = harness.fcgi_connect(s.sock("submit"), timeout=20)
        c.sendall(harness.fcgi_request_bytes(harness.fcgi_params("POST", "/api/jobs/no$such/cancel"),
                                             keep_conn=True))
        eq(harness.fcgi_read_response(c).status, 404, "first request on connection %d" % i)
        conns.append(c)
    return conns


def _together(s, conns, requests, meanwhile=None):
    """Sends requests[i] (bytes) on conns[i] while jobgate-submit is stopped, runs meanwhile()
    (if given) before letting it go, and returns the answers in order."""
    pid = s.program_pids("submit")[0]
    harness.sigstop(pid)
    try:
        for c, data in zip(conns, requests):
            c.sendall(data)
        time.sleep(0.2)
        if meanwhile:
            meanwhile()
    finally:
        harness.os.kill(pid, signal.SIGCONT)
    return [harness.fcgi_read_response(c, "request %d" % i) for i, c in enumerate(conns)]


def _check_new_job(s, r, body, what):
    """r is the 202 of submit body: its Location, the job it shows, and the job in Redis (its
    payload, and the stored object: the answer's bytes)."""
    eq(r.status, 202, what + ": status")
    job = r.json()
    eq(r.header("Location"), "/api/jobs/" + job["id"], what + ": Location")
    eq((job["queue"], job["type"], job["priority"], job["status"], job["version"]),
       (body.get("queue", "default"), body["type"], body.get("priority", 0), "queued", 1),
       what + ": queue, type, priority, status, version")
    stored = s.redis("HMGET", _job_key(job["id"]), "payload", "json")
    eq(stored[0], json.dumps(body.get("payload", {})), what + ": the payload stored")
    eq(stored[1].encode(), r.body, what + ": the job object stored, byte for byte the answer")
    return job


def test_submits_that_arrive_together_each_get_their_own_job_exactly_once():
    with harness.Stack(name="sbatch", threads=1, programs=("status", "submit")) as s:
        queues = ["sb%d" % i for i in range(4)]   # on the cluster: different nodes
        for round_no in range(2):   # twice: the connections carry requests after a batch
            what = "round %d" % round_no
            bodies = [{"type": "echo", "queue": queues[i % 4], "priority": i - 16,
                       "payload": {"n": i, "round": round_no}} for i in range(32)]
            out = harness.while_stopped(
                s.program_pids("submit")[0],
                [lambda b=b: s.request("POST", "/jobs", json=b) for b in bodies])
            ids = []
            for i, r in enumerate(out):
                check(isinstance(r, harness.Response), "%s, POST %d: expected an answer" % (what, i),
                      r)
                job = _check_new_job(s, r, bodies[i], "%s, POST %d" % (what, i))
                eq(s.job(job["id"]), job, "%s, POST %d: the job read back" % (what, i))
                ids.append(job["id"])
            eq(len(set(ids)), len(ids), what + ": distinct job ids")
            for q in queues:
                eq(int(s.redis("ZCARD", _ready(q))), 8 * (round_no + 1),
                   what + ": jobs ready in queue " + q)
        eq(s.check_alive(), [], "processes that died")


def test_jobs_submitted_one_after_another_keep_their_order_among_concurrent_submits():
    with harness.Stack(name="sbfifo", threads=2, programs=("status", "submit")) as s:
        q = harness.unique_queue("fifo")
        stop = threading.Event()
        others = []

        def hammer(k):
            n = 0
            while not stop.is_set():
                r = s.request("POST", "/jobs", json={"type": "echo", "queue": q,
                                                     "payload": {"other": k, "n": n}})
                others.append(r.status)
                n += 1
        threads = [threading.Thread(target=hammer, args=(k,), daemon=True) for k in range(6)]
        for t in threads:
            t.start()
        try:
            mine = [s.submit(type="echo", queue=q, payload={"seq": i})["id"] for i in range(30)]
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        eq(set(others), {202}, "the other submits' statuses")
        order = [m for m in s.redis("ZRANGE", _ready(q), 0, -1) if m in set(mine)]
        eq(order, mine, "the sequence's jobs in the queue's order (FIFO within a priority)")


def _read_answers(conn, n, what):
    """n answers read from conn, which may come in one read (harness.fcgi_read_response would drop
    the bytes after the first)."""
    answers, stdout, buf = [], [], b""
    while len(answers) < n:
        while len(buf) >= 8 and len(answers) < n:
            _, rtype, _, clen, plen, _ = struct.unpack("!BBHHBB", buf[:8])
            if len(buf) < 8 + clen + plen:
                break
            content, buf = buf[8:8 + clen], buf[8 + clen + plen:]
            if rtype == harness.FCGI_STDOUT:
                stdout.append(content)
            elif rtype == harness.FCGI_END:
                answers.append(harness.parse_cgi_response(b"".join(stdout), what))
                stdout = []
        if len(answers) < n:
            chunk = conn.recv(65536)
            check(chunk, "%s: expected %d answers before the connection closed" % (what, n),
                  len(answers))
            buf += chunk
    return answers


@harness.front_independent
def test_clients_that_leave_a_batch_cost_the_others_nothing():
    # while jobgate-submit is stopped: 8 submits sent whole, then two of their clients close
    # before any answer, and a ninth client sends half a submit and closes too
    with harness.Stack(name="sbgone", threads=1, programs=("status", "submit")) as s:
        conns = _connections(s, 9)
        try:
            bodies = [{"type": "echo", "queue": "gone", "payload": {"n": i}} for i in range(8)]
            half = _post({"type": "echo", "queue": "gone", "payload": {"n": 8}})
            pid = s.program_pids("submit")[0]
            harness.sigstop(pid)
            try:
                for c, b in zip(conns, bodies):
                    c.sendall(_post(b))
                conns[8].sendall(half[:len(half) // 2])
                for i in (2, 5, 8):
                    conns[i].close()
                time.sleep(0.2)
            finally:
                harness.os.kill(pid, signal.SIGCONT)
            stayed = [i for i in range(8) if i not in (2, 5)]
            for i in stayed:
                r = harness.fcgi_read_response(conns[i], "submit %d" % i)
                _check_new_job(s, r, bodies[i], "submit %d, beside the clients that left" % i)
            # the two that left were sent whole: made once or not at all; the half one never
            n = int(s.redis("ZCARD", _ready("gone")))
            check(6 <= n <= 8, "expected the 6 answered jobs, and at most the 2 whole ones of "
                  "the clients that left, in the queue", n)
            conns[0].sendall(_post({"type": "echo", "queue": "gone", "payload": {"after": 1}}))
            r = harness.fcgi_read_response(conns[0], "a submit after the batch")
            _check_new_job(s, r, {"type": "echo", "queue": "gone", "payload": {"after": 1}},
                           "a submit after the batch, on a connection that stayed")
        finally:
            for c in conns:
                c.close()
        eq(s.check_alive(), [], "processes that died")


@harness.front_independent
def test_submits_pipelined_on_one_connection_are_made_in_their_order_among_a_batch():
    with harness.Stack(name="sbpipe", threads=1, programs=("status", "submit")) as s:
        conns = _connections(s, 5)
        try:
            q = harness.unique_queue("pipe")
            mine = [{"type": "echo", "queue": q, "payload": {"seq": i}} for i in range(4)]
            others = [{"type": "echo", "queue": q, "payload": {"other": i}} for i in range(4)]
            # conns[0] sends its 4 submits at once (a client that pipelines); the others one each
            pid = s.program_pids("submit")[0]
            harness.sigstop(pid)
            try:
                conns[0].sendall(b"".join(_post(b) for b in mine))
                for c, b in zip(conns[1:], others):
                    c.sendall(_post(b))
                time.sleep(0.2)
            finally:
                harness.os.kill(pid, signal.SIGCONT)
            answers = _read_answers(conns[0], 4, "pipelined submits")
            got = [None] + [harness.fcgi_read_response(c, "another connection's submit")
                            for c in conns[1:]]
            ids = [_check_new_job(s, r, mine[i], "pipelined submit %d" % i)["id"]
                   for i, r in enumerate(answers)]
            for i, r in enumerate(got[1:]):
                _check_new_job(s, r, others[i], "submit %d of another connection" % i)
            order = [m for m in s.redis("ZRANGE", _ready(q), 0, -1) if m in set(ids)]
            eq(order, ids, "the pipelined jobs in the queue's order (FIFO within a priority)")
        finally:
            for c in conns:
                c.close()
        eq(s.check_alive(), [], "processes that died")


@harness.front_independent
def test_a_batch_mixing_plain_submits_with_other_requests_gives_each_its_own_answer():
    env = {"JOBGATE_MAX_BODY": "2048"}
    with harness.Stack(name="sbmix", threads=1, programs=("status", "submit"), env=env) as s:
        conns = _connections(s, 12)
        try:
            old = s.submit(type="echo", queue="mix")
            plain = [{"type": "echo", "queue": "mix", "payload": {"n": i}} for i in range(3)]
            delayed = {"type": "echo", "queue": "mix", "delay": 60, "payload": {"d": 1}}
            versioned = {"type": "echo", "queue": "mix", "cache_version": "v1",
                         "payload": {"v": 1}}
            new_type = {"type": "fresh", "queue": "mixnew", "payload": {"f": 1}}
            cached = {"type": "echo", "queue": "mix", "cache": True, "payload": {"c": 1}}
            keyed = {"type": "echo", "queue": "mix", "payload": {"k": 1}}
            requests = [
                _post(plain[0]),                                                  # 0
                _post(keyed, {"Idempotency-Key": "batch-key-1"}),                 # 1
                _post(cached),                                                    # 2
                _post(b"{not json"),                                              # 3
                _post({"type": "echo", "payload": {"x": "y" * 4096}}),            # 4
                _post(plain[1]),                                                  # 5
                _post(delayed),                                                   # 6
                _post(new_type),                                                  # 7
                harness.fcgi_request_bytes(harness.fcgi_params(
                    "POST", "/api/jobs/%s/cancel" % old["id"]), keep_conn=True),  # 8
                _post({"type": "echo", "colour": "red"}),                         # 9
                _post(versioned),                                                 # 10
                _post(plain[2]),                                                  # 11
            ]
            for round_no in range(2):
                what = "round %d: " % round_no
                got = _together(s, conns, requests)
                for k, i in enumerate((0, 5, 11)):
                    _check_new_job(s, got[i], plain[k], what + "plain submit %d" % i)
                _check_new_job(s, got[10], versioned, what + "submit with cache_version")
                job = _check_new_job(s, got[7], new_type, what + "submit of a type new to a queue")
                check("mixnew" in s.redis("SMEMBERS", "jobgate:queues"),
                      what + "expected the new queue registered", s.redis("SMEMBERS",
                                                                          "jobgate:queues"))
                # delayed: the job object of the script, run_at set
                eq(got[6].status, 202, what + "delayed submit")
                d = got[6].json()
                eq((d["status"], d["run_at"] is not None), ("queued", True),
                   what + "delayed submit: status, run_at set")
                eq(s.redis("HGET", _job_key(d["id"]), "json").encode(), got[6].body,
                   what + "delayed submit: the object stored, byte for byte the answer")
                eq(got[6].header("Location"), "/api/jobs/" + d["id"], what + "delayed Location")
                # Idempotency-Key: the first time a new job, then the same one
                first_keyed = got[1].json()["id"] if round_no == 0 else first_keyed
                eq(got[1].status, 202 if round_no == 0 else 200, what + "Idempotency-Key submit")
                eq(got[1].json()["id"], first_keyed, what + "the Idempotency-Key's job")
                # cache: true, nothing cached: a new job, then that job coalesced
                eq(got[2].status, 202, what + "cache: true submit")
                first_cached = got[2].json()["id"] if round_no == 0 else first_cached
                eq((got[2].json()["id"], got[2].json().get("coalesced", False)),
                   (first_cached, round_no == 1), what + "cache: true submit: job, coalesced")
                harness.expect_error(got[3], 400, "invalid_json")
                harness.expect_error(got[4], 413, "payload_too_large")
                harness.expect_error(got[9], 400, "invalid_field")
                if round_no == 0:
                    eq(got[8].status, 200, what + "cancel of a queued job")
                    eq(got[8].json()["status"], "cancelled", what + "the cancelled job")
                else:
                    harness.expect_error(got[8], 409, "conflict")
                ids = [got[i].json()["id"] for i in (0, 1, 2, 5, 6, 7, 10, 11)]
                eq(len(set(ids)), len(ids), what + "distinct jobs")
                eq(job["queue"], "mixnew", what + "the new type's queue")
            eq(int(s.redis("ZCARD", _ready("mix"))), 2 * 4 + 2,
               "jobs ready in queue mix (plain, cache_version, cache: true once, keyed once; "
               "the first job cancelled)")
        finally:
            for c in conns:
                c.close()
        eq(s.check_alive(), [], "processes that died")


@harness.front_independent
@harness.single_redis_only("counts the reads of the one Redis; the cluster pass of "
                           "submit_batch.submits_that_arrive_together covers the answers there")
def test_submits_that_arrive_together_reach_redis_in_one_read():
    with harness.Stack(name="sbwrite", threads=1, programs=("status", "submit")) as s:
        conns = _connections(s, 8)
        try:
            s.submit(type="echo", queue="one")   # the script is loaded

            def reads():
                info = s.redis("INFO", "stats")
                return int(info.split("total_reads_processed:")[1].split()[0])
            # SIGSTOP makes them arrive together, but on a loaded machine the stop may land late
            # and a submit be served before the others are there: up to 3 tries
            tries = []
            for attempt in range(3):
                bodies = [{"type": "echo", "queue": "one", "payload": {"n": i, "try": attempt}}
                          for i in range(8)]
                before = reads()
                got = _together(s, conns, [_post(b) for b in bodies])
                tries.append(reads() - before)
                for i, r in enumerate(got):
                    _check_new_job(s, r, bodies[i], "try %d, submit %d" % (attempt, i))
                if tries[-1] <= 3:
                    break
            # INFO before and after are one read each; a submit at a time would be 8 more
            check(min(tries) <= 3, "expected the 8 submits in one read of Redis (INFO itself is "
                  "one more), in one of 3 tries", tries)
        finally:
            for c in conns:
                c.close()


@harness.front_independent
def test_a_script_flush_while_submits_arrive_together_makes_every_job_once():
    with harness.Stack(name="sbflush", threads=1, programs=("status", "submit")) as s:
        conns = _connections(s, 8)
        try:
            # one queue: one script call of 8 jobs, run alone (jg_script_run loads the script);
            # two queues: two calls of 4 in one write, both answered NOSCRIPT, each job then alone
            for nq in (1, 2):
                s.submit(type="echo", queue="flush")   # the script is loaded, then flushed
                bodies = [{"type": "echo", "queue": "flush%d.%d" % (nq, i % nq),
                           "payload": {"n": i}} for i in range(8)]
                got = _together(s, conns, [_post(b) for b in bodies],
                                meanwhile=lambda: s.redis("SCRIPT", "FLUSH"))
                ids = [_check_new_job(s, r, bodies[i], "%d queues, submit %d" % (nq, i))["id"]
                       for i, r in enumerate(got)]
                eq(len(set(ids)), 8, "%d queues: distinct jobs" % nq)
                for k in range(nq):
                    q = "flush%d.%d" % (nq, k)
                    eq(int(s.redis("ZCARD", _ready(q))), 8 // nq, "jobs ready in queue " + q)
        finally:
            for c in conns:
                c.close()
        eq(s.check_alive(), [], "processes that died")


def _jobs_of(s, queue):
    """payload -> [job ids] of every job hash of the queue, and whether each is whole: in the
    ready set and the queue's index, with its log's first entry."""
    out, whole = {}, {}
    ready = set(s.redis("ZRANGE", _ready(queue), 0, -1))
    index = set(s.redis("ZRANGE", "jobgate:{%s}:q:%s:jobs" % (_tag(queue), queue), 0, -1))
    for key in s.redis("KEYS", "jobgate:{%s}:job:*" % _tag(queue)):
        jid = key.split(":job:")[1]
        payload, status, js = s.redis("HMGET", key, "payload", "status", "json")
        out.setdefault(payload, []).append(jid)
        log = s.redis("XLEN", "jobgate:{%s}:log:%s" % (jid[:8], jid))
        whole[jid] = (status == "queued" and js is not None and jid in ready and jid in index
                      and int(log) == 1)
    return out, whole, len(ready)


@harness.front_independent
@harness.single_redis_only("stalls the one Redis (SIGSTOP); on the cluster, cluster_faults."
                           "a_master_killed_under_load covers a node lost under submits")
def test_redis_stalled_while_a_batch_waits_for_its_replies_is_503_with_no_job_twice_or_half():
    with harness.Stack(name="sbstall", threads=1, programs=("status", "submit")) as s:
        conns = _connections(s, 8)
        try:
            s.submit(type="echo", queue="stall")
            bodies = [{"type": "echo", "queue": "stall", "payload": {"n": i}} for i in range(8)]
            s.redis_proc.signal(signal.SIGSTOP)   # the batch goes out, no reply comes
            try:
                got = _together(s, conns, [_post(b) for b in bodies])
            finally:
                s.redis_proc.signal(signal.SIGCONT)
            for i, r in enumerate(got):
                harness.expect_error(r, 503, "unavailable")
                eq(r.header("Retry-After"), "1", "Retry-After of submit %d" % i)
            # the calls reached Redis before its stall: it may run them after, each once, whole
            time.sleep(0.5)
            jobs, whole, nready = _jobs_of(s, "stall")
            for payload, jids in jobs.items():
                eq(len(jids), 1, "jobs with payload %s" % payload)
            eq([j for j, ok in whole.items() if not ok], [], "jobs not whole")
            eq(nready, len(whole), "jobs ready in the queue")
            # and the next batch is served
            more = [{"type": "echo", "queue": "stall", "payload": {"m": i}} for i in range(8)]
            got = _together(s, conns, [_post(b) for b in more])
            for i, r in enumerate(got):
                _check_new_job(s, r, more[i], "submit %d after the stall" % i)
            jobs, whole, nready = _jobs_of(s, "stall")
            eq([j for j, ok in whole.items() if not ok], [], "jobs not whole, after")
            eq(sorted(len(j) for j in jobs.values()), [1] * len(jobs), "jobs per payload, after")
        finally:
            for c in conns:
                c.close()
        eq(s.check_alive(), [], "processes that died")


@harness.front_independent
@harness.single_redis_only("needs a Redis with no replica; the cluster's replicas always ack")
def test_with_wait_replicas_on_and_no_replica_every_submit_of_a_batch_is_503():
    env = {"JOBGATE_REDIS_WAIT_REPLICAS": "1", "JOBGATE_REDIS_WAIT_MS": "200"}
    with harness.Stack(env=env, name="sbwait", threads=1, programs=("status", "submit")) as s:
        conns = _connections(s, 6)
        try:
            bodies = [{"type": "echo", "queue": "wait", "payload": {"n": i}} for i in range(6)]
            got = _together(s, conns, [_post(b) for b in bodies])
            for i, r in enumerate(got):
                harness.expect_error(r, 503, "unavailable")
            # each call was sent once, with its WAIT: no job twice, none half
            jobs, whole, nready = _jobs_of(s, "wait")
            eq(sorted(len(j) for j in jobs.values()), [1] * len(jobs), "jobs per payload")
            eq([j for j, ok in whole.items() if not ok], [], "jobs not whole")
        finally:
            for c in conns:
                c.close()
        eq(s.check_alive(), [], "processes that died")


def _evalsha_calls(s):
    for line in s.redis("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


@harness.front_independent
@harness.single_redis_only("counts the script calls of the one Redis; the cluster pass of "
                           "submit_batch.submits_that_arrive_together covers the answers there")
def test_plain_submits_of_one_queue_and_type_that_arrive_together_are_made_by_one_call():
    # 6 submits to (joina, echo), 2 to (joina, other), 2 to (joinb, echo): three submit.lua calls
    # (docs/redis.md, "submit.lua": further jobs), each answering every job of its group as a
    # call of its own would, with one created_at per call
    with harness.Stack(name="sbjoin", threads=1, programs=("status", "submit")) as s:
        conns = _connections(s, 10)
        try:
            for q, t in (("joina", "echo"), ("joina", "other"), ("joinb", "echo")):
                s.submit(type=t, queue=q)   # the script loaded; the queues and types known
            groups = [("joina", "echo")] * 6 + [("joina", "other")] * 2 + [("joinb", "echo")] * 2
            priorities = [0, 5, 0, -2, 5, 0, 1, 1, 0, 0]
            tries = []
            # SIGSTOP makes them arrive together, but on a loaded machine the stop may land late
            # and a submit be served before the others are there: up to 3 tries
            for attempt in range(3):
                bodies = [{"type": t, "queue": q, "priority": p, "payload": {"n": i, "try": attempt}}
                          for i, ((q, t), p) in enumerate(zip(groups, priorities))]
                before = _evalsha_calls(s)
                got = _together(s, conns, [_post(b) for b in bodies])
                tries.append(_evalsha_calls(s) - before)
                jobs = [_check_new_job(s, r, bodies[i], "try %d, submit %d" % (attempt, i))
                        for i, r in enumerate(got)]
                eq(len({j["id"] for j in jobs}), 10, "try %d: distinct jobs" % attempt)
                for j in jobs:
                    eq(s.redis("XRANGE", "jobgate:{%s}:log:%s" % (j["id"][:8], j["id"]), "-", "+")
                       [0][1][5], "queued", "the log of job %s" % j["id"])
                if tries[-1] == 3:
                    break
            check(tries[-1] == 3, "expected one submit.lua call per queue and type (3) in one of "
                  "3 tries", tries)
            for lo, hi in ((0, 6), (6, 8), (8, 10)):
                group = jobs[lo:hi]
                eq(len({j["created_at"] for j in group}), 1,
                   "one created_at for the jobs of one call, %d..%d" % (lo, hi))
                ids = {j["id"]: j["priority"] for j in group}
                order = [m for m in s.redis("ZRANGE", _ready(group[0]["queue"], group[0]["type"]),
                                            0, -1) if m in ids]
                eq(sorted(order), sorted(ids), "the call's jobs in the ready set")
                eq([ids[m] for m in order], sorted(ids.values(), reverse=True),
                   "the ready set's order: priority first")
            eq(s.redis("HGET", "jobgate:{%s}:q:joina:counts" % _tag("joina"), "submitted:echo"),
               str(1 + 6 * len(tries)), "joina's count of echo submits")
            # the batch's log lines went out together, one whole line per job
            log = s.program_log("submit")
            for j in jobs:
                lines = [ln for ln in log.splitlines() if "job=" + j["id"] in ln]
                eq(len(lines), 1, "log lines of job %s" % j["id"])
                check(lines[0].startswith("ts=") and 'msg="job submitted"' in lines[0],
                      "expected a whole \"job submitted\" line", lines[0])
        finally:
            for c in conns:
                c.close()
        eq(s.check_alive(), [], "processes that died")
