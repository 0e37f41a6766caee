"""jobgate on a Redis Cluster under load while the cluster changes (issue 16): a queue's slot
resharded with `redis-cli --cluster reshard`, and a master killed with -9, while clients submit
jobs of that queue, read and long-poll them, and workers run them. Real cluster (3 masters, 3
replicas, tests/cluster.py), real nginx, programs and workers. What a user sees is checked: the
HTTP answers, each job's status, attempts and log, and a file each job run appends its id to
(so a job run twice shows). The figures of each run (answers, 503s, migration time, keys moved,
TRYAGAIN/ASK answered) are printed."""

import collections
import contextlib
import hashlib
import itertools
import os
import random
import subprocess
import tempfile
import threading
import time

import harness
from cluster import Cluster, key_slot
from harness import check, eq

PROGRAMS = ("submit", "status", "logs", "admin")
# each run appends "<id> <attempt>" to RUNS, prints two lines, and answers its id
JOB = ('echo "$JOBGATE_JOB_ID $JOBGATE_ATTEMPT" >> %s; echo "step 1"; echo "step 2"; '
       'printf \'{"id":"%%s"}\' "$JOBGATE_JOB_ID" > "$JOBGATE_RESULT_FILE"')


def _tag(queue):
    return hashlib.sha256(queue.encode()).hexdigest()[:8]


def _queue_at(slots, stem):
    """A queue name whose tag's slot is one of slots."""
    for i in itertools.count():
        q = "%s-%d" % (stem, i)
        if key_slot("{%s}" % _tag(q)) in slots:
            return q


def _info_count(node, section, name):
    for line in node.call("INFO", section).splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":", 1)[1].split(",")[0].split("=")[1])
    return 0


class Load:
    """Clients of one queue, each a thread: `submitters` POST jobs one after the other; a reader
    GETs jobs submitted so far (half of them with If-None-Match); a long poller waits
    (?wait=1, If-None-Match) on the newest job; a log reader GETs a job's log. Every answer is
    kept as (what, status, start, end) in self.answers; ok(what, status) says what is expected."""

    def __init__(self, s, queue, submitters=2):
        self.s, self.queue = s, queue
        self.ids = []            # acknowledged (202) jobs, in submit order
        self.answers = []
        self.bad = []            # answers not allowed: (what, status, body)
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.allow_503 = False
        self.threads = [threading.Thread(target=self._submit, daemon=True)
                        for _ in range(submitters)]
        self.threads += [threading.Thread(target=f, daemon=True)
                         for f in (self._read, self._long_poll, self._logs)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30)

    def _note(self, what, r, t0, allowed):
        t1 = time.monotonic()
        with self.lock:
            self.answers.append((what, r.status, t0, t1))
            if r.status not in allowed and not (self.allow_503 and r.status == 503):
                self.bad.append((what, r.status, r.body[:300]))

    def _pick(self):
        with self.lock:
            return random.choice(self.ids) if self.ids else None

    def _submit(self):
        n = 0
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            r = self.s.request("POST", "/jobs", json={"type": "mark", "queue": self.queue,
                                                      "payload": {"n": n}})
            self._note("submit", r, t0, (202,))
            if r.status == 202:
                with self.lock:
                    self.ids.append(r.json()["id"])
            n += 1

    def _read(self):
        etags = {}
        while not self.stop_ev.is_set():
            jid = self._pick()
            if jid is None:
                time.sleep(0.01)
                continue
            h = {"If-None-Match": etags[jid]} if jid in etags and random.random() < 0.5 else {}
            t0 = time.monotonic()
            r = self.s.request("GET", "/jobs/" + jid, headers=h)
            self._note("status", r, t0, (200, 304))
            if r.status == 200:
                etags[jid] = r.header("ETag")

    def _long_poll(self):
        while not self.stop_ev.is_set():
            with self.lock:
                jid = self.ids[-1] if self.ids else None
            if jid is None:
                time.sleep(0.01)
                continue
            r = self.s.request("GET", "/jobs/" + jid)
            if r.status != 200:
                continue
            t0 = time.monotonic()
            r = self.s.request("GET", "/jobs/%s?wait=1" % jid,
                               headers={"If-None-Match": r.header("ETag")})
            self._note("long poll", r, t0, (200, 304))

    def _logs(self):
        while not self.stop_ev.is_set():
            jid = self._pick()
            if jid is None:
                time.sleep(0.01)
                continue
            t0 = time.monotonic()
            r = self.s.request("GET", "/jobs/%s/logs" % jid)
            self._note("logs", r, t0, (200,))
            time.sleep(0.01)

    def summary(self):
        c = collections.Counter((w, st) for w, st, _, _ in self.answers)
        return ", ".join("%s %d: %d" % (w, st, n) for (w, st), n in sorted(c.items()))


def _check_each_job_ran_once(s, ids, runs_path, unacked=0, timeout=30, log=True,
                             given_back=False):
    """Every id ends done after one attempt, with its own result and its whole log, and ran
    exactly once (runs_path holds one line per run). Other jobs ran only if a submit was not
    acknowledged (unacked: how many answered 503, whose job may exist all the same), once each.
    given_back: a log may also hold claims given back (_given_back); returns how many."""
    deadline = time.monotonic() + timeout
    for jid in ids:
        j = s.wait_status(jid, ("done", "failed", "cancelled"),
                          timeout=max(1.0, deadline - time.monotonic()))
        if (j["status"], j["attempts"], j["result"]) != ("done", 1, {"id": jid}):
            raise AssertionError("job %s: expected done after 1 attempt with its result, got %r"
                                 % (jid, j))
    time.sleep(0.5)   # a second run would show by now
    runs = collections.Counter(line.split()[0] for line in open(runs_path).read().splitlines())
    eq({k: n for k, n in runs.items() if n != 1}, {}, "jobs run more than once")
    eq(sorted(set(ids) - set(runs)), [], "acknowledged jobs that did not run")
    extra = sorted(set(runs) - set(ids))
    check(len(extra) <= unacked, "expected no job run but those submitted (%d unacknowledged)"
          % unacked, extra)
    n_given = 0
    for jid in ids if log else ():
        got = _log_lines(s, jid)
        if given_back:
            k = _given_back(got)
            check(k is not None, "expected the whole log of job %s, each line once: queued, "
                  "attempt 1 started (again after each claim given back), step 1, step 2, done"
                  % jid, got)
            n_given += k
        else:
            whole = [("system", "queued"), ("system", "attempt 1 started"), ("stdout", "step 1"),
                     ("stdout", "step 2"), ("system", "done")]
            eq(got, whole, "the log of job %s" % jid)
    return n_given


def _failover_losses(s, ids, runs_path, unacked, timeout=45):
    """What _check_each_job_ran_once checks, for jobs around a master killed with -9: returns
    ({id: what went otherwise}, [ids claimed again]). The first are jobs that a write lost with
    the dead master explains (a 202'd job missing, a claim or completion lost so that it ran
    twice, log lines missing). The second ran once all the same, as attempt 2: the dead
    master applied their claim but its answer never reached the worker, which never started them,
    and they were taken back after their lease (30 s: the timeout covers it). The worker now gives
    such jobs back at once (giveback.lua): they run as attempt 1, their log showing it. A job that failed or was cancelled, or a run of a job nobody submitted, fails."""
    losses, again = {}, []
    deadline = time.monotonic() + timeout
    for jid in ids:
        while True:
            r = s.request("GET", "/jobs/" + jid)
            if r.status == 200 and r.json()["status"] in ("done", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if r.status == 404:
            losses[jid] = "missing (its submit lost)"
            continue
        eq(r.status, 200, "GET /jobs/%s" % jid)
        j = r.json()
        check(j["status"] in ("done", "running", "queued"), "job %s failed or cancelled" % jid, j)
        if j["status"] != "done":
            losses[jid] = "%s %d s after the load" % (j["status"], timeout)
        elif j["result"] != {"id": jid}:
            losses[jid] = "done with another result: %r" % j["result"]
        elif j["attempts"] != 1:
            again.append(jid)
    time.sleep(0.5)   # a second run would show by now
    runs = collections.Counter(line.split()[0] for line in open(runs_path).read().splitlines())
    for jid, n in runs.items():
        if n != 1 and jid in ids and jid not in losses:
            losses[jid] = "ran %d times (a claim or completion lost)" % n
    eq(sorted(set(ids) - set(runs) - set(losses)), [], "acknowledged jobs that did not run")
    extra = sorted(set(runs) - set(ids))
    check(len(extra) <= unacked, "expected no job run but those submitted (%d unacknowledged)"
          % unacked, extra)
    for jid in ids:
        if jid in losses:
            continue
        got = _log_lines(s, jid)
        if jid in again:   # its one run's output, once
            got = [x for x in got if x[0] == "stdout"]
            if got != [("stdout", "step 1"), ("stdout", "step 2")]:
                losses[jid] = "log lines lost or doubled: %r" % got
        elif _given_back(got) is None:
            losses[jid] = "log lines lost: %r" % got
    return losses, again


def _log_lines(s, jid):
    """Job jid's log as (stream, line) pairs, the worker's name cut off. Read after the load,
    once the failover is over, but a program thread that was idle since the kill may still meet
    the dead master first and a node that has not yet heard of the promotion (gossip): a 503
    there is asked again for up to 10 s (the availability during the failover is what the load's
    answers check)."""
    def answered():
        r = s.request("GET", "/jobs/%s/logs?limit=1000" % jid)
        return r if r.status != 503 else None
    r = harness.wait_until(answered, 10, "logs of %s answered other than 503" % jid)
    eq(r.status, 200, "GET logs of %s" % jid)
    return [(e["stream"], e["line"].split(" on worker ")[0]) for e in r.json()["entries"]]


def _given_back(got):
    """How many times a claim of the job was given back (giveback.lua: its worker never got the
    claim's answer) if got, a job's log as (stream, line) pairs, is its whole log with each line
    once but for those (each adds its `given back` line and the attempt started again); None
    when it is not."""
    given = ("system", "attempt 1 given back: its worker never got the claim's answer")
    started = ("system", "attempt 1 started")
    k = sum(1 for x in got if x == given)
    whole = [("system", "queued")] + [started, given] * k + [
        started, ("stdout", "step 1"), ("stdout", "step 2"), ("system", "done")]
    return k if got == whole else None


@contextlib.contextmanager
def _cluster_stack(env=None, replicas=1):
    """A cluster (3 masters, `replicas` replicas each), a stack on it, and a temp dir for the
    runs file."""
    with Cluster(replicas=replicas) as c, tempfile.TemporaryDirectory() as d:
        e = {"REDIS_URL": c.url}
        e.update(env or {})
        s = harness.Stack(env=e, programs=PROGRAMS, name="clusterfaults")
        try:
            yield c, s, d
        finally:
            s.stop()


def test_resharding_a_busy_queue_loses_no_job_and_shows_no_error():
    with _cluster_stack() as (c, s, d):
        # redis-cli --cluster reshard moves a source's lowest slots first: the queue is put in
        # the lowest slot of a master, so that moving one slot moves exactly the queue's
        lows = {lo for lo, _, _, *_ in c.live()[0].call("CLUSTER", "SLOTS")}
        q = _queue_at(lows, "reshard")
        tag = _tag(q)
        slot = key_slot("{%s}" % tag)
        src = c.master_of_slot(slot)
        dst = next(m for m in c.masters() if m is not src)
        runs = os.path.join(d, "runs")
        for _ in range(2):
            s.start_worker(queues=[q], types={"mark": JOB % runs}, concurrency=4)
        load = Load(s, q).start()
        try:
            time.sleep(2.0)   # jobs of the queue pile up in the slot: there is something to move
            keys = int(src.call("CLUSTER", "COUNTKEYSINSLOT", slot))
            for n in (src, dst):
                n.call("CONFIG", "RESETSTAT")
            t0 = time.monotonic()
            p = subprocess.run(["redis-cli", "--cluster", "reshard", src.addr,
                                "--cluster-from", c.node_id(src), "--cluster-to", c.node_id(dst),
                                "--cluster-slots", "1", "--cluster-pipeline", "2",
                                "--cluster-yes"], capture_output=True, timeout=60)
            t1 = time.monotonic()
            eq(p.returncode, 0, "redis-cli --cluster reshard exit code: "
               + p.stdout.decode()[-600:] + p.stderr.decode()[-300:])
            time.sleep(1.5)   # and on after it, with the programs' old slot maps
        finally:
            load.stop()
        during = [a for a in load.answers if a[2] < t1 and a[3] > t0]
        refused = {n: (_info_count(n, "errorstats", "errorstat_ASK"),
                       _info_count(n, "errorstats", "errorstat_TRYAGAIN"),
                       _info_count(n, "errorstats", "errorstat_MOVED")) for n in (src, dst)}
        print("reshard of slot %d (%d keys) took %.2f s; answers: %s; %d during the move; "
              "ASK/TRYAGAIN/MOVED answered by the old master %r, the new one %r"
              % (slot, keys, t1 - t0, load.summary(), len(during), refused[src], refused[dst]))
        eq(load.bad, [], "answers other than 202 (submit), 200/304 (status, long poll), "
           "200 (logs)")
        check(any(w == "submit" for w, *_ in during), "expected submits while the slot moved",
              load.summary())
        check(sum(refused[src]) > 0, "expected the old master to have redirected or refused "
              "commands while the slot moved", refused)
        eq(c.master_of_slot(slot), dst, "master of the queue's slot after the reshard")
        eq(src.call("KEYS", "*{%s}*" % tag), [], "keys of the queue left on the old master")
        check(int(dst.call("CLUSTER", "COUNTKEYSINSLOT", slot)) > keys,
              "expected the queue's keys on the new master", keys)
        _check_each_job_ran_once(s, load.ids, runs)
        for w in s.workers:
            check("level=error" not in w.log(), "expected no error in the worker's log",
                  w.log()[-1500:])


def test_a_delayed_job_whose_hash_moved_ahead_of_its_queue_is_promoted_once_the_move_ends():
    # claim.lua promotes a due delayed job: it takes the id out of `delayed`, then reads the
    # job's hash (a key it builds from the id). With that hash already on the new master and
    # the queue's sets still on the old one, Redis stops the script at the read, after the id
    # left `delayed`: the job would stay queued for ever. The script refuses instead (TRYAGAIN)
    # before writing anything, and the worker calls again until the migration is over.
    with _cluster_stack() as (c, s, d):
        q = "split-promote"
        runs = os.path.join(d, "runs")
        cmd = ('t=$(sed "s/[^0-9]//g"); echo "$JOBGATE_JOB_ID $JOBGATE_ATTEMPT" >> %s; '
               'sleep "$t"; printf \'{"id":"%%s"}\' "$JOBGATE_JOB_ID" > "$JOBGATE_RESULT_FILE"'
               % runs)
        w = s.start_worker(queues=[q], types={"t": cmd}, concurrency=1)
        busy = s.submit(type="t", queue=q, payload={"s": 5})   # keeps `running` filled
        s.wait_status(busy["id"], "running")
        ready = s.submit(type="t", queue=q, payload={"s": 0})  # keeps its ready set filled
        delayed = s.submit(type="t", queue=q, payload={"s": 0}, delay=1)
        tag = _tag(q)
        slot = key_slot("{%s}" % tag)
        dst = next(m for m in c.masters() if m is not c.master_of_slot(slot))
        src = c.begin_move(slot, dst)
        src.call("MIGRATE", c.ip, dst.port, "jobgate:{%s}:job:%s" % (tag, delayed["id"]), 0, 5000)
        src.call("CONFIG", "RESETSTAT")
        time.sleep(2.5)   # the delayed job is due; the worker's claims run meanwhile
        tryagain = _info_count(src, "errorstats", "errorstat_TRYAGAIN")
        eq(s.job(delayed["id"])["status"], "queued", "the delayed job while its keys are split")
        c.migrate_keys(slot, src, dst)
        c.finish_move(slot, src, dst)
        print("TRYAGAIN answered by the old master while the job's hash was ahead: %d" % tryagain)
        _check_each_job_ran_once(s, [busy["id"], ready["id"], delayed["id"]], runs, timeout=20,
                                 log=False)
        check(tryagain > 0, "expected the worker's calls refused while the keys were split",
              src.call("INFO", "errorstats"))
        check("level=error" not in w.log(), "expected no error in the worker's log",
              w.log()[-1500:])


def test_a_master_killed_under_load_costs_503s_only_while_its_replica_takes_over():
    with _cluster_stack() as (c, s, d):
        q = "failover-load"
        slot = key_slot("{%s}" % _tag(q))
        master = c.master_of_slot(slot)
        runs = os.path.join(d, "runs")
        for _ in range(2):
            s.start_worker(queues=[q], types={"mark": JOB % runs}, concurrency=4)
        # the replica must have had its first sync (5 s after the cluster was made) to be able
        # to take over: WAIT for it to acknowledge a job of the queue
        first = s.submit(type="mark", queue=q, payload={})
        eq(master.call("WAIT", 1, 15000), 1, "replicas of the queue's master acknowledging")
        pids = {p: [x.pid for x in procs] for p, procs in s.procs.items()}
        load = Load(s, q)
        load.ids.append(first["id"])
        load.allow_503 = True
        load.start()
        try:
            time.sleep(1.5)
            t_kill = time.monotonic()
            c.kill(master)
            c.wait_promoted(master)
            t_promoted = time.monotonic()
            time.sleep(2.5)   # and on after, on the promoted replica
        finally:
            load.stop()
        fails = [a for a in load.answers if a[1] == 503]
        last_503 = max((a[3] for a in fails), default=t_kill) - t_kill
        print("master killed; replica promoted after %.2f s; answers: %s; 503s: %d, the last "
              "one %.2f s after the kill" % (t_promoted - t_kill, load.summary(), len(fails),
                                             last_503))
        eq(load.bad, [], "answers other than 202 or 503 (submit), 200/304/503 (status, long "
           "poll), 200/503 (logs)")
        # a request needs the new map, which the other nodes learn by gossip: 503s only until
        # the promotion, plus two seconds (a loaded machine: the test's shards share 2 cores)
        check(last_503 <= t_promoted - t_kill + 2.0, "expected 503s only until the replica was "
              "promoted (%.2f s after the kill), plus two seconds" % (t_promoted - t_kill),
              last_503)
        after = [a for a in load.answers if a[0] == "submit" and a[2] > t_promoted + 1.0]
        check(after and all(a[1] == 202 for a in after),
              "expected every submit 202 a second after the promotion", after[-5:])
        # every job answered 202 ends done after one attempt, run once, with its whole log, but
        # for the writes Redis' asynchronous replication may lose with the old master
        # (docs/redis.md "Failover"): those are counted and printed, and must stay rare
        losses, again = _failover_losses(s, load.ids, runs,
                                         unacked=sum(1 for a in fails if a[0] == "submit"))
        print("jobs touched by writes lost with the old master: %d of %d %s; claimed again "
              "after their lease (the claim's answer lost), each run once: %d"
              % (len(losses), len(load.ids), losses, len(again)))
        check(len(losses) <= max(2, len(load.ids) // 100),
              "expected at most 1 %% of the jobs touched by lost writes (the old master's last "
              "microseconds), got %d of %d" % (len(losses), len(load.ids)), losses)
        eq({p: [x.pid for x in procs] for p, procs in s.procs.items()}, pids,
           "program pids (no restart)")
        for w in s.workers:
            check(w.alive(), "expected the worker still running")


def _killed_master_with_wait_replicas_on(replicas):
    """JOBGATE_REDIS_WAIT_REPLICAS=1: every write is answered only once a replica of its master
    has it, and the replica that takes over is the one with the most of the old master's
    stream, so it holds every write that was answered (docs/redis.md "Failover"). With one
    replica per master the promoted one has none: writes of its slots answer 503 until the
    killed node is back as its replica (restarted here). With two, the other replica follows
    the new master and acknowledges at once: 503s only for the failover window."""
    env = {"JOBGATE_REDIS_WAIT_REPLICAS": "1", "JOBGATE_REDIS_WAIT_MS": "1000"}
    with _cluster_stack(env, replicas=replicas) as (c, s, d):
        q = "failover-wait"
        slot = key_slot("{%s}" % _tag(q))
        master = c.master_of_slot(slot)
        runs = os.path.join(d, "runs")
        for _ in range(2):
            s.start_worker(queues=[q], types={"mark": JOB % runs}, concurrency=4)
        # the replicas must have had their first sync to acknowledge anything: the first submit
        # is answered once one has (a 503 before: retried), and every replica is in sync
        # before the kill (one still in its first sync could not take over)
        harness.wait_until(lambda: s.request("POST", "/jobs", json={
            "type": "mark", "queue": q, "payload": {}}).status == 202, 20,
            "a submit acknowledged by the queue's replica")
        eq(master.call("WAIT", replicas, 15000), replicas, "replicas of the queue's master in sync")
        pids = {p: [x.pid for x in procs] for p, procs in s.procs.items()}
        load = Load(s, q)
        load.ids.extend(j["id"] for j in s.request("GET", "/jobs?queue=" + q).json()["jobs"])
        load.allow_503 = True
        load.start()
        try:
            time.sleep(1.5)
            t_kill = time.monotonic()
            c.kill(master)
            c.wait_promoted(master)
            t_promoted = time.monotonic()
            if replicas == 1:
                c.restart(master)   # back as the new master's replica: writes acknowledged again
            t_back = time.monotonic()
            time.sleep(2.5)
        finally:
            load.stop()
        fails = [a for a in load.answers if a[1] == 503]
        last_503 = max((a[3] for a in fails), default=t_kill) - t_kill
        print("%d replica(s) a master; master killed; replica promoted after %.2f s, writes "
              "acknowledged again from %.2f s; answers: %s; 503s: %d, the last one %.2f s after "
              "the kill" % (replicas, t_promoted - t_kill, t_back - t_kill, load.summary(),
                            len(fails), last_503))
        eq(load.bad, [], "answers other than 202 or 503 (submit), 200/304/503 (status, long "
           "poll), 200/503 (logs)")
        # a request needs the new map, which the other nodes learn by gossip: plus two seconds
        # (a loaded machine: the test's shards share 2 cores)
        check(last_503 <= t_back - t_kill + 2.0, "expected 503s only until the queue's master "
              "had a replica acknowledging again (%.2f s after the kill), plus two seconds"
              % (t_back - t_kill), last_503)
        after = [a for a in load.answers if a[0] == "submit" and a[2] > t_back + 2.0]
        check(after and all(a[1] == 202 for a in after),
              "expected every submit 202 two seconds after the replica was back", after[-5:])
        # no tolerance: the one line a log may hold more than once is a claim given back
        # (its worker never got the answer: docs/redis.md "giveback.lua")
        given = _check_each_job_ran_once(s, load.ids, runs, timeout=60, given_back=True,
                                         unacked=sum(1 for a in fails if a[0] == "submit"))
        print("every one of %d jobs answered 202 done once, after one attempt, with its whole "
              "log; claims given back (their answer lost): %d" % (len(load.ids), given))
        eq({p: [x.pid for x in procs] for p, procs in s.procs.items()}, pids,
           "program pids (no restart)")
        for w in s.workers:
            check(w.alive(), "expected the worker still running")


def test_a_master_killed_with_wait_replicas_on_loses_no_job_and_runs_none_twice():
    _killed_master_with_wait_replicas_on(replicas=1)


def test_with_two_replicas_a_master_killed_with_wait_on_costs_503s_only_while_one_takes_over():
    # issue 16's whole promise at once: 503s only for the failover window, and no job lost
    # or run twice
    _killed_master_with_wait_replicas_on(replicas=2)
