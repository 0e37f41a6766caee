"""Writes that survive a lost answer (issue 16, docs/redis.md "Failover"), on one Redis: the opt-in
replica acknowledgement (JOBGATE_REDIS_WAIT_REPLICAS=N, JOBGATE_REDIS_WAIT_MS) with a replica of
the test's own (a real redis-server --replicaof the stack's Redis), with none, and with one that
stalls (SIGSTOP); and a claim whose answer never reaches the worker (a real TCP proxy between the
worker and Redis that closes the connection instead of passing the claim's answer on), given back
at once by giveback.lua instead of waiting for the lease. What a user sees is checked: the HTTP
answers, each job's status, attempts and log, and a file each job run appends its id to.
The strict test under a master killed with -9 is in tests/test_cluster_faults.py."""

import collections
import contextlib
import hashlib
import os
import signal
import socket
import tempfile
import threading

import harness
from harness import check, eq

PROGRAMS = ("submit", "status", "logs", "admin", "cache")
# each run appends "<id> <attempt>" to RUNS, prints two lines, and answers its id
JOB = ('echo "$JOBGATE_JOB_ID $JOBGATE_ATTEMPT" >> %s; echo "step 1"; echo "step 2"; '
       'printf \'{"id":"%%s"}\' "$JOBGATE_JOB_ID" > "$JOBGATE_RESULT_FILE"')


def _tag(queue):
    return hashlib.sha256(queue.encode()).hexdigest()[:8]


class Replica:
    """A redis-server replicating the stack's Redis (no persistence, files in the stack's dir)."""

    def __init__(self, s):
        self.port = harness.free_port()
        d = os.path.join(s.dir, "replica")
        os.makedirs(d)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--replicaof", "127.0.0.1", str(s.redis_port), "--save", "",
                "--appendonly", "no", "--dir", d, "--daemonize", "no", "--protected-mode", "no",
                "--logfile", ""]
        env = dict(os.environ)
        env["JOBGATE_HARNESS_TOKEN"] = harness._RUN_TOKEN
        self.proc = harness.Proc("replica", args, env, os.path.join(d, "redis.log"))
        self.client = harness.Redis(port=self.port, timeout=5)
        harness.wait_until(lambda: "master_link_status:up" in self.call("INFO", "replication"),
                           15, "the replica in sync", interval=0.05)

    def call(self, *args):
        return self.client.call(*args)

    def stop(self):
        self.proc.signal(signal.SIGCONT)
        self.proc.stop(signal.SIGKILL, 5)
        with contextlib.suppress(Exception):
            self.client.close()


def _runs(path):
    if not os.path.exists(path):
        return collections.Counter()
    return collections.Counter(line.split()[0] for line in open(path).read().splitlines())


def _log(s, jid):
    r = s.request("GET", "/jobs/%s/logs?limit=1000" % jid)
    eq(r.status, 200, "GET logs of %s" % jid)
    return [(e["stream"], e["line"].split(" on worker ")[0]) for e in r.json()["entries"]]


def _wait_calls(s):
    for line in s.redis("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_wait:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


@harness.single_redis_only("starts a replica of the stack's own Redis; on the cluster, "
                           "cluster_faults.a_master_killed_with_wait_replicas_on covers the setting")
def test_with_wait_replicas_on_every_write_is_on_the_replica_before_it_is_answered():
    env = {"JOBGATE_REDIS_WAIT_REPLICAS": "1", "JOBGATE_REDIS_WAIT_MS": "5000"}
    with harness.Stack(env=env, programs=PROGRAMS, name="durable-ack") as s, \
            tempfile.TemporaryDirectory() as d:
        rep = Replica(s)
        try:
            q = harness.unique_queue("ack")
            runs = os.path.join(d, "runs")
            s.start_worker(queues=[q], types={"mark": JOB % runs})
            before = _wait_calls(s)
            r = s.request("POST", "/jobs", json={"type": "mark", "queue": q})
            eq(r.status, 202, "POST /jobs with a replica acknowledging")
            jid = r.json()["id"]
            # the 202 came after the replica had the job: it is there now, whatever follows
            eq(rep.call("HGET", "jobgate:{%s}:job:%s" % (jid[:8], jid), "id"), jid,
               "the job's id on the replica right after the 202")
            j = s.wait_status(jid, ("done", "failed", "cancelled"))
            eq((j["status"], j["attempts"], j["result"]), ("done", 1, {"id": jid}),
               "status, attempts, result")
            # the worker's completion was acknowledged too before it moved on: the replica has it
            harness.wait_until(lambda: rep.call("HGET", "jobgate:{%s}:job:%s" % (jid[:8], jid),
                                                "status") == "done", 5, "done on the replica")
            want = [("system", "queued"), ("system", "attempt 1 started"), ("stdout", "step 1"),
                    ("stdout", "step 2"), ("system", "done")]
            eq(_log(s, jid), want, "the job's log")
            eq(int(rep.call("XLEN", "jobgate:{%s}:log:%s" % (jid[:8], jid))), len(want),
               "entries of the log on the replica")
            # submit, claim, log, complete: each followed by a WAIT
            check(_wait_calls(s) - before >= 4, "expected a WAIT after each of the job's writes",
                  _wait_calls(s) - before)
            eq(dict(_runs(runs)), {jid: 1}, "runs of the job")
            w = s.workers[0]
            check("level=error" not in w.log() and "not acknowledged" not in w.log(),
                  "expected no error in the worker's log", w.log()[-1500:])
        finally:
            rep.stop()


@harness.single_redis_only("needs a Redis with no replica; the cluster's replicas always ack")
def test_with_wait_replicas_on_and_no_replica_a_write_answers_503_unavailable_and_reads_work():
    env = {"JOBGATE_REDIS_WAIT_REPLICAS": "1", "JOBGATE_REDIS_WAIT_MS": "200"}
    with harness.Stack(env=env, programs=PROGRAMS, name="durable-none") as s:
        q = harness.unique_queue("none")
        r = s.request("POST", "/jobs", json={"type": "t", "queue": q})
        eq(r.status, 503, "POST /jobs with no replica to acknowledge it")
        eq(r.json()["error"]["code"], "unavailable", "error code")
        eq(r.header("Retry-After"), "1", "Retry-After")
        r = s.request("PUT", "/cache/" + "ab" * 32, body=b'{"x":1}',
                      headers={"Content-Type": "application/json"})
        eq(r.status, 503, "PUT /cache/{key} with no replica to acknowledge it")
        # /stats takes back expired leases of every known queue (claim.lua, a write): 503 too
        s.redis("SADD", "jobgate:queues", q)
        eq(s.request("GET", "/stats").status, 503, "GET /stats with no replica")
        # reads need no acknowledgement
        eq(s.request("GET", "/health").status, 200, "GET /health")
        eq(s.request("GET", "/jobs?queue=" + q).status, 200, "GET /jobs?queue=")
        eq(s.request("GET", "/jobs/%s.AAAAAAAAAAAAAAAAAAAAAA" % _tag(q)).status, 404,
           "GET of an unknown job")
        for p in s.procs.values():
            for x in p:
                check(x.alive(), "expected the program still running", x.name)


@harness.single_redis_only("stalls the stack's own replica; the cluster test kills a master")
def test_writes_the_replica_did_not_acknowledge_in_time_are_neither_lost_nor_done_twice():
    # The replica stalls (SIGSTOP) for longer than JOBGATE_REDIS_WAIT_MS. A submit is written on
    # the master but not acknowledged, so answered 503; the repeat with the same Idempotency-Key,
    # once the replica is back, answers that one job (docs/redis.md, "Failover"). Then a worker
    # starts while the replica stalls again: its claim of the job is not acknowledged, so it does
    # not start the job; it gives the job back (giveback.lua) and runs it once, as attempt 1,
    # when the replica is back.
    env = {"JOBGATE_REDIS_WAIT_REPLICAS": "1", "JOBGATE_REDIS_WAIT_MS": "300"}
    with harness.Stack(env=env, programs=PROGRAMS, name="durable-stall") as s, \
            tempfile.TemporaryDirectory() as d:
        rep = Replica(s)
        try:
            q = harness.unique_queue("stall")
            jobs = "jobgate:{%s}:q:%s:jobs" % (_tag(q), q)
            h = {"Idempotency-Key": "stall-" + q}
            rep.proc.signal(signal.SIGSTOP)
            try:
                r = s.request("POST", "/jobs", json={"type": "mark", "queue": q}, headers=h)
                eq(r.status, 503, "POST /jobs while the replica stalls")
                eq(r.json()["error"]["code"], "unavailable", "error code")
                eq(r.header("Retry-After"), "1", "Retry-After")
            finally:
                rep.proc.signal(signal.SIGCONT)
            made = s.redis("ZRANGE", jobs, 0, -1)
            eq(len(made), 1, "jobs made on the master by the submit answered 503")
            r = s.request("POST", "/jobs", json={"type": "mark", "queue": q}, headers=h)
            eq(r.status, 200, "the repeat with the same Idempotency-Key: the job the first made")
            jid = r.json()["id"]
            eq(jid, made[0], "the job the repeat answers")
            r = s.request("GET", "/jobs?queue=%s" % q)
            eq([j["id"] for j in r.json()["jobs"]], [jid], "the queue's jobs")

            runs = os.path.join(d, "runs")
            key = "jobgate:{%s}:job:%s" % (_tag(q), jid)
            rep.proc.signal(signal.SIGSTOP)
            try:
                w = s.start_worker(queues=[q], types={"mark": JOB % runs})
                harness.wait_until(lambda: s.redis("HGET", key, "fence") is not None, 10,
                                   "the job claimed on the master")
                harness.wait_until(lambda: "not acknowledged" in w.log(), 10,
                                   "the worker's claim not acknowledged")
                eq(dict(_runs(runs)), {}, "runs while the claim is not acknowledged")
            finally:
                rep.proc.signal(signal.SIGCONT)
            j = s.wait_status(jid, ("done", "failed", "cancelled"))
            eq((j["status"], j["attempts"], j["result"]), ("done", 1, {"id": jid}),
               "status, attempts, result")
            eq(dict(_runs(runs)), {jid: 1}, "runs of the job")
            log = _log(s, jid)
            eq([x for x in log if x[0] == "stdout"], [("stdout", "step 1"), ("stdout", "step 2")],
               "the job's output lines")
            check(("system", "attempt 1 given back: its worker never got the claim's answer")
                  in log, "expected the claim not acknowledged given back", log)
            eq(log[-1], ("system", "done"), "the last entry of the log")
            # (the worker's own "gave back" line is not asserted: its give-back may itself have
            # been applied while the replica stalled, and the next one then finds nothing)
        finally:
            rep.stop()


class DropAnswers:
    """A TCP proxy to the stack's Redis that loses answers: armed with needles, it closes a
    connection instead of passing an answer on, each needle once, in order: ("answer", bytes) at
    the first answer holding bytes (a claim's answer holds the job's id); ("request", bytes) at
    the first answer after a request holding bytes went through to Redis (which ran it)."""

    def __init__(self, s):
        self.upstream = ("127.0.0.1", s.redis_port)
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.needles = []
        self.dropped = []
        self.lock = threading.Lock()
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            u = socket.create_connection(self.upstream)
            conn = {"drop_next": None}
            with self.lock:
                self.socks += [c, u]
            threading.Thread(target=self._pump, args=(c, u, False, conn), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, True, conn), daemon=True).start()

    def _pump(self, src, dst, answers, conn):
        tail = b""
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            hit = False
            if data:
                with self.lock:
                    if self.needles:
                        side, needle = self.needles[0]
                        if (side == "answer") == answers and needle in tail + data:
                            self.needles.pop(0)
                            if answers:
                                hit = True
                            else:
                                conn["drop_next"] = needle
                    if answers and conn["drop_next"] is not None:
                        hit = True
                    if hit:
                        self.dropped.append(conn["drop_next"] or needle)
                tail = data[-64:]
            if hit or not data:
                for x in (src, dst):
                    with contextlib.suppress(OSError):
                        x.shutdown(socket.SHUT_RDWR)
                    x.close()
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def arm(self, *needles):
        with self.lock:
            self.needles = list(needles)

    def close(self):
        self.lsock.close()
        with self.lock:
            for x in self.socks:
                with contextlib.suppress(OSError):
                    x.close()


@harness.single_redis_only("the proxy stands between the worker and the stack's one Redis; the "
                           "cluster test kills a master under load")
def test_a_claim_whose_answer_never_reached_the_worker_is_given_back_at_once_and_runs_once():
    # JOBGATE_LEASE=60: without the give-back the job would stay running until its lease ran out
    # and then run as attempt 2; the job must be done, as attempt 1, well before that
    with harness.Stack(env={"JOBGATE_LEASE": "60"}, programs=PROGRAMS, name="durable-lost") as s, \
            tempfile.TemporaryDirectory() as d:
        proxy = DropAnswers(s)
        try:
            q = harness.unique_queue("lost")
            runs = os.path.join(d, "runs")
            w = s.start_worker(queues=[q], types={"mark": JOB % runs},
                               env={"REDIS_URL": "redis://127.0.0.1:%d/0" % proxy.port})
            proxy.arm(("answer", (_tag(q) + ".").encode()))
            jid = s.submit(type="mark", queue=q)["id"]
            j = s.wait_status(jid, ("done", "failed", "cancelled"), timeout=20)
            eq(len(proxy.dropped), 1, "claim answers the proxy dropped")
            eq((j["status"], j["attempts"], j["result"]), ("done", 1, {"id": jid}),
               "status, attempts, result")
            eq(dict(_runs(runs)), {jid: 1}, "runs of the job")
            eq(_log(s, jid), [("system", "queued"), ("system", "attempt 1 started"),
                              ("system", "attempt 1 given back: its worker never got the "
                                         "claim's answer"),
                              ("system", "attempt 1 started"), ("stdout", "step 1"),
                              ("stdout", "step 2"), ("system", "done")], "the job's log")
            check("gave back jobs of a claim whose answer was lost" in w.log(),
                  "expected the worker to say it gave the job back", w.log()[-1500:])
        finally:
            proxy.close()


@harness.single_redis_only("the proxy stands between the worker and the stack's one Redis; the "
                           "cluster test kills a master under load")
def test_log_lines_and_a_completion_whose_answers_were_lost_are_sent_again_and_applied_once():
    # the answer to the log batch holding "step 1" is lost (Redis appended the lines), then the
    # answer to the completion (Redis applied it): the worker sends each again; log.lua skips the
    # lines it has (numbered), complete.lua answers the completion it applied as accepted
    with harness.Stack(programs=PROGRAMS, name="durable-resend") as s, \
            tempfile.TemporaryDirectory() as d:
        proxy = DropAnswers(s)
        try:
            q = harness.unique_queue("resend")
            runs = os.path.join(d, "runs")
            w = s.start_worker(queues=[q], types={"mark": JOB % runs},
                               env={"REDIS_URL": "redis://127.0.0.1:%d/0" % proxy.port})
            proxy.arm(("request", b"\r\nstep 1\r\n"), ("request", b"\r\ndone\r\n"))
            jid = s.submit(type="mark", queue=q)["id"]
            j = s.wait_status(jid, ("done", "failed", "cancelled"), timeout=20)
            # done shows once Redis applied the completion; the worker hears of it later
            harness.wait_until(lambda: "job finished" in w.log(), 20,
                               "the worker's completion answered")
            eq(len(proxy.dropped), 2, "answers the proxy dropped (log batch, completion)")
            eq((j["status"], j["attempts"], j["result"]), ("done", 1, {"id": jid}),
               "status, attempts, result")
            eq(dict(_runs(runs)), {jid: 1}, "runs of the job")
            eq(_log(s, jid), [("system", "queued"), ("system", "attempt 1 started"),
                              ("stdout", "step 1"), ("stdout", "step 2"), ("system", "done")],
               "the job's log: each line once")
            check("refused" not in w.log() and "level=error" not in w.log(),
                  "expected no refusal or error in the worker's log", w.log()[-1500:])
        finally:
            proxy.close()
