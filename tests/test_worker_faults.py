"""jobgate-worker under faults (issue 4): no job lost, stuck or run twice. Real workers are killed
with -9, stopped with SIGSTOP past their lease, sent SIGTERM with a short grace; Redis is
restarted under load; jobs ignore SIGTERM or are cancelled while running. Everything is checked
as a client sees it over HTTP (status) plus the job's log stream."""

import os
import signal
import tempfile
import threading
import time

import harness
from harness import check, eq, stack, unique_queue

# a worker suite: runs on one redis-server and again on a Redis Cluster (run.py)
REDIS = harness.REDIS_KINDS
from test_worker import lines_of

FAST = {"JOBGATE_LEASE": "2", "JOBGATE_RETRY_BASE": "0.1"}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not running
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def test_kill_9_worker_mid_job_another_worker_finishes_it():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as d:
        # attempt 1 leaves a background child and waits; later attempts finish at once
        cmd = ('if [ "$JOBGATE_ATTEMPT" = 1 ]; then pwd > %s/dir; sleep 60 & echo $! > %s/child; '
               'echo $$ > %s/leader; wait; fi; echo "{\\"attempt\\":$JOBGATE_ATTEMPT}" > '
               '"$JOBGATE_RESULT_FILE"' % (d, d, d))
        a = s.start_worker(queues=[q], types={"t": cmd}, env=FAST, args=["--id", "a-" + q])
        job = s.submit(type="t", queue=q)
        harness.wait_until(lambda: _read_int(d + "/child") and _read_int(d + "/leader"), 10,
                           "attempt 1 running on worker a")
        leader, child = _read_int(d + "/leader"), _read_int(d + "/child")
        a.proc.expected_exit = True
        os.kill(a.pid, signal.SIGKILL)
        harness.wait_until(lambda: not _alive(leader) and not _alive(child), 5,
                           "the job's processes to die with their worker")
        eq(s.job(job["id"])["status"], "running", "status right after the worker died")
        s.start_worker(queues=[q], types={"t": cmd}, env=FAST, args=["--id", "b-" + q])
        done = s.wait_status(job["id"], ("done", "failed"), timeout=20)
        eq(done["status"], "done", "status")
        eq(done["attempts"], 2, "attempts")
        eq(done["result"], {"attempt": 2}, "result of attempt 2")
        eq(done["worker"], "b-" + q, "worker of the last attempt")
        system = lines_of(s, job["id"], "system")
        check(any(x.startswith("attempt 1 failed: worker lost; retry in ") for x in system),
              "expected 'attempt 1 failed: worker lost; retry in ...' in the log", system)
        jobdir = open(d + "/dir").read().strip()
        check(not os.path.exists(jobdir), "the killed worker's job directory is removed", jobdir)


def test_expired_lease_is_taken_back_even_with_no_other_job():
    """A job whose worker vanished never stays running: any live worker takes it back."""
    s = stack()
    q = unique_queue()
    a = s.start_worker(queues=[q], types={"t": "sleep 60"}, env=FAST)
    job = s.submit(type="t", queue=q, max_attempts=1)
    s.wait_status(job["id"], "running")
    a.proc.expected_exit = True
    os.kill(a.pid, signal.SIGKILL)
    s.start_worker(queues=[q], types={"other": "true"}, env=FAST)   # serves none of its type
    failed = s.wait_status(job["id"], "failed", timeout=15)
    eq(failed["error"], "worker lost", "error")
    eq(lines_of(s, job["id"], "system")[-1], "failed: worker lost", "last system entry")


def test_300_jobs_over_4_workers_each_run_exactly_once():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as d:
        runs = os.path.join(d, "runs")
        cmd = 'echo "$JOBGATE_JOB_ID $JOBGATE_ATTEMPT" >> %s; cat > "$JOBGATE_RESULT_FILE"' % runs
        for i in range(4):
            s.start_worker(queues=[q], types={"t": cmd}, concurrency=4)
        ids = [s.submit(type="t", queue=q, payload={"n": i})["id"] for i in range(300)]
        harness.wait_until(lambda: os.path.exists(runs) and
                           len(open(runs).read().splitlines()) >= 300, 60, "300 runs")
        for n, i in enumerate(ids):
            j = s.wait_status(i, "done", timeout=10)
            if j["result"] != {"n": n} or j["attempts"] != 1:
                raise AssertionError("job %d: expected done with result {'n': %d} after 1 attempt, "
                                     "got %r" % (n, n, j))
        time.sleep(1.0)   # anything run twice would show up by now
        seen = {}
        for line in open(runs).read().splitlines():
            jid, attempt = line.split()
            seen.setdefault(jid, []).append(attempt)
        twice = {k: v for k, v in seen.items() if len(v) != 1}
        eq(twice, {}, "jobs run more than once")
        eq(sorted(seen), sorted(ids), "the jobs that ran")
        workers = {s.job(i)["worker"] for i in ids[::10]}
        check(len(workers) > 1, "expected the jobs to be spread over the workers", workers)


def test_flaky_retries_with_growing_delays_then_fails():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q], env={"JOBGATE_RETRY_BASE": "0.4"})
    job = s.submit(type="flaky", queue=q, max_attempts=4, payload={"fail_times": 10})
    failed = s.wait_status(job["id"], ("failed", "done"), timeout=30)
    eq(failed["status"], "failed", "status")
    eq(failed["attempts"], 4, "attempts")
    system = lines_of(s, job["id"], "system")
    delays = [float(x.rsplit("retry in ", 1)[1][:-2]) for x in system if "; retry in " in x]
    eq(len(delays), 3, "retries announced in the log: %r" % system)
    for n, dl in enumerate(delays):
        base = 0.4 * 2 ** n
        check(base * 0.8 - 0.051 <= dl <= base * 1.2 + 0.051,
              "retry %d: expected %.2f s +-20 %%" % (n + 1, base), dl)
    check(system[-1].startswith("failed: exit status 1: flaky: attempt 4"),
          "last system entry", system[-1])


def test_timeout_kills_a_job_that_ignores_sigterm():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as d:
        cmd = "trap '' TERM; echo $$ > %s/pid; sleep 60; echo survived" % d
        s.start_worker(queues=[q], types={"t": cmd})
        t0 = time.monotonic()
        job = s.submit(type="t", queue=q, timeout=1, max_attempts=1)
        failed = s.wait_status(job["id"], ("failed", "done"), timeout=20)
        took = time.monotonic() - t0
        eq(failed["status"], "failed", "status")
        eq(failed["error"], "timeout after 1 s", "error")
        check(took >= 5.5, "expected SIGKILL only 5 s after SIGTERM", took)
        pid = _read_int(d + "/pid")
        check(pid and not _alive(pid), "the job's process is gone", pid)
        check("survived" not in lines_of(s, job["id"], "stdout"), "the job did not run on")


def test_timeout_with_a_job_that_obeys_sigterm_retries():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q], types={"t": "sleep 30"}, env={"JOBGATE_RETRY_BASE": "0.1"})
    job = s.submit(type="t", queue=q, timeout=1, max_attempts=2)
    failed = s.wait_status(job["id"], "failed", timeout=20)
    eq(failed["attempts"], 2, "attempts")
    eq(failed["error"], "timeout after 1 s", "error")
    check(any(x.startswith("attempt 1 failed: timeout after 1 s; retry in ")
              for x in lines_of(s, job["id"], "system")), "first timeout retried")


def test_cancel_of_a_running_job_ends_it_within_about_a_second():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as d:
        s.start_worker(queues=[q], types={"t": "echo $$ > %s/pid; sleep 60" % d})
        job = s.submit(type="t", queue=q)
        s.wait_status(job["id"], "running")
        harness.wait_until(lambda: _read_int(d + "/pid"), 5, "the job's pid")
        t0 = time.monotonic()
        r = s.request("POST", "/jobs/%s/cancel" % job["id"])
        eq(r.status, 202, "cancel of a running job")
        eq(r.json()["cancel_requested"], True, "cancel_requested")
        done = s.wait_status(job["id"], "cancelled", timeout=10)
        took = time.monotonic() - t0
        check(took < 3.0, "expected the job cancelled within about 1 s", round(took, 2))
        check(not _alive(_read_int(d + "/pid")), "the job's process is gone")
        check(done["finished_at"] is not None, "finished_at of a cancelled job", done)
        system = lines_of(s, job["id"], "system")
        eq(system[-1], "cancelled", "last system entry")
        r = s.request("POST", "/jobs/%s/cancel" % job["id"])
        eq(r.status, 409, "cancel again once cancelled")


def test_sigterm_lets_a_running_job_finish_within_grace():
    s = stack()
    q = unique_queue()
    w = s.start_worker(queues=[q], grace=10)
    job = s.submit(type="sleep", queue=q, payload={"ms": 1500})
    s.wait_status(job["id"], "running")
    w.signal(signal.SIGTERM)
    eq(w.wait(15), 0, "worker exit code after the job finished")
    eq(s.job(job["id"])["status"], "done", "status of the job that ran during the grace")


def test_sigterm_stops_claiming():
    s = stack()
    q = unique_queue()
    w = s.start_worker(queues=[q], grace=10)
    first = s.submit(type="sleep", queue=q, payload={"ms": 1500})
    s.wait_status(first["id"], "running")
    w.signal(signal.SIGTERM)
    time.sleep(0.2)
    second = s.submit(type="echo", queue=q)
    eq(w.wait(15), 0, "worker exit code")
    eq(s.job(second["id"])["status"], "queued", "a job submitted after SIGTERM is left queued")


def test_sigterm_with_short_grace_requeues_without_counting_the_attempt():
    s = stack()
    q = unique_queue()
    w = s.start_worker(queues=[q], grace=0.5)
    job = s.submit(type="sleep", queue=q, payload={"ms": 5000, "steps": 10})
    s.wait_status(job["id"], "running")
    w.signal(signal.SIGTERM)
    eq(w.wait(10), 0, "worker exit code")
    j = s.job(job["id"])
    eq(j["status"], "queued", "status after the worker stopped")
    eq(j["attempts"], 0, "attempts (the stopped attempt is not counted)")
    eq(j["run_at"], None, "run_at (ready at once)")
    check("attempt 1 stopped: worker shutting down; queued again"
          in lines_of(s, job["id"], "system"), "the log says why")
    s.start_worker(queues=[q])
    done = s.wait_status(job["id"], "done", timeout=40)
    eq(done["attempts"], 1, "attempts once a new worker finished it")


def test_stale_worker_completion_is_refused():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as d:
        cmd = 'echo $$ > %s/pid-$JOBGATE_ATTEMPT; sleep 6; echo "\\"by $JOBGATE_ATTEMPT\\"" > ' \
              '"$JOBGATE_RESULT_FILE"' % d
        a = s.start_worker(queues=[q], types={"t": cmd}, env=FAST, args=["--id", "a-" + q])
        job = s.submit(type="t", queue=q)
        harness.wait_until(lambda: _read_int(d + "/pid-1"), 10, "attempt 1 started")
        a.signal(signal.SIGSTOP)
        try:
            b = s.start_worker(queues=[q], types={"t": cmd}, env=FAST, args=["--id", "b-" + q])
            harness.wait_until(lambda: _read_int(d + "/pid-2"), 15, "attempt 2 started on b")
            j = s.job(job["id"])
            eq((j["status"], j["attempts"], j["worker"]), ("running", 2, "b-" + q),
               "the job after its lease ran out")
        finally:
            a.signal(signal.SIGCONT)
        harness.wait_until(lambda: not _alive(_read_int(d + "/pid-1")), 5,
                           "the stale worker to kill its child")
        done = s.wait_status(job["id"], ("done", "failed"), timeout=20)
        eq(done["status"], "done", "status")
        eq(done["result"], "by 2", "result (from the attempt that holds the lease)")
        harness.wait_until(lambda: "completion refused" in a.log(), 5,
                           "worker a to log that its completion was refused")
        # by Redis refusing its renewal or lines, or, woken after its lease's end, by its own
        # clock first (it then kills the job before it asks)
        check(any(m in a.log() for m in ("lease renewal refused", "log lines refused",
                                         "lease ran out without a renewal")),
              "worker a learnt it lost the job", a.log()[-1500:])
        check("refused" not in b.log(), "worker b had nothing refused", b.log()[-1500:])
        system = lines_of(s, job["id"], "system")
        eq(system.count("done"), 1, "accepted completions")
        check("attempt 1 failed: worker lost; retry in" in " ".join(system), "worker lost logged",
              system)


@harness.single_redis_only("shuts the one Redis down; on a cluster a master is killed instead "
                           "(cluster.a_master_killed_is_replaced_by_its_replica_with_no_restart)")
def test_redis_restart_under_load_loses_no_job():
    with harness.Stack(name="restart") as s:
        q = "restart"
        s.start_worker(queues=[q], concurrency=2)
        running = s.submit(type="sleep", queue=q, payload={"ms": 4000, "steps": 8})
        s.wait_status(running["id"], "running")
        accepted, statuses, stop = [], [], threading.Event()
        pause, paused = threading.Event(), threading.Event()

        def load():
            n = 0
            while not stop.is_set():
                if pause.is_set():
                    paused.set()
                    time.sleep(0.01)
                    continue
                n += 1
                try:
                    r = s.request("POST", "/jobs", json={"type": "echo", "queue": q,
                                                         "payload": {"n": n}}, timeout=10)
                    statuses.append(r.status)
                    if r.status == 202:
                        accepted.append(r.json()["id"])
                    r2 = s.request("GET", "/jobs/" + running["id"], timeout=10)
                    statuses.append(r2.status)
                except OSError as e:
                    statuses.append(repr(e))
                time.sleep(0.01)
        t = threading.Thread(target=load, daemon=True)
        t.start()
        time.sleep(0.5)
        # a restart that keeps the data: no submit in flight while Redis saves and stops
        pause.set()
        paused.wait(5)
        try:
            s.redis("SHUTDOWN", "SAVE")
        except (harness.RedisError, OSError):
            pass
        s.redis_proc.wait(10)
        s.redis_proc.expected_exit = True
        s.stop_redis()
        pause.clear()
        time.sleep(2.0)
        s.start_redis()
        back = len(statuses)
        # each request thread retries Redis after its backoff (at most 2 s: shared/redis.c), so
        # the 503s stop within about 2 s of Redis being back, and then for good
        calm = lambda: len(statuses) - back >= 10 and all(x in (200, 202) for x in statuses[-10:])
        try:
            calm_by = harness.wait_until(calm, 6, "503s to stop once Redis is back")
        except AssertionError:
            calm_by = False
        time.sleep(0.5)
        stop.set()
        t.join(15)
        check(503 in statuses, "expected 503s while Redis was down", sorted(set(map(str, statuses))))
        tail = statuses[-10:]
        check(calm_by and tail and all(x in (200, 202) for x in tail), "expected 503s to stop "
              "once Redis is back (within the 2 s backoff)", statuses[back:][-40:])
        done = s.wait_status(running["id"], ("done", "failed"), timeout=30)
        eq(done["status"], "done", "the job that ran through the restart")
        eq(done["attempts"], 1, "its attempts")
        for i in accepted:
            j = s.wait_status(i, ("done", "failed"), timeout=30)
            eq(j["status"], "done", "job %s accepted with 202" % i)
        check(len(accepted) > 10, "sanity: submits were accepted", len(accepted))
        s.check_alive(raise_=True)


@harness.single_redis_only("shuts the one Redis down; on a cluster a master is killed instead "
                           "(cluster.a_master_killed_is_replaced_by_its_replica_with_no_restart)")
def test_job_that_ends_while_redis_is_down_is_reported_when_it_is_back():
    with harness.Stack(name="outage") as s:
        q = "outage"
        w = s.start_worker(queues=[q])
        job = s.submit(type="sleep", queue=q, payload={"ms": 1000, "steps": 4})
        s.wait_status(job["id"], "running")
        try:
            s.redis("SHUTDOWN", "SAVE")
        except (harness.RedisError, OSError):
            pass
        s.redis_proc.wait(10)
        s.redis_proc.expected_exit = True
        s.stop_redis()
        time.sleep(2.5)            # the job ends meanwhile
        check(w.alive(), "the worker keeps running while Redis is down")
        eq(s.request("GET", "/jobs/" + job["id"]).status, 503, "status while Redis is down")
        s.start_redis()
        done = s.wait_status(job["id"], ("done", "failed"), timeout=15)
        eq(done["status"], "done", "status once Redis is back")
        eq(done["result"], {"slept_ms": 1000}, "result")
        eq(done["progress"], 100, "progress reported after the outage")
        eq(lines_of(s, job["id"], "stdout"), ["step %d/4" % i for i in range(1, 5)],
           "lines written while Redis was down")
        check("redis" in w.log(), "the worker logged the outage", w.log()[-500:])


# ---- the worker protocol as specified (issue 12) ------------------------------------------------

@harness.single_redis_only("shuts the one Redis down for longer than a lease; a cluster fails "
                           "over within 2 s "
                           "(cluster.a_master_killed_is_replaced_by_its_replica_with_no_restart)")
def test_job_whose_lease_cannot_be_renewed_is_killed_by_lease_end():
    """Redis is away for longer than the lease: the worker must not run the job past the lease it
    last got (another worker may take the job back and run it meanwhile)."""
    with harness.Stack(name="leaseend") as s:
        q = "leaseend"
        with tempfile.TemporaryDirectory() as d:
            cmd = ('if [ "$JOBGATE_ATTEMPT" = 1 ]; then echo $$ > %s/pid; sleep 60 & echo $! > '
                   '%s/child; wait; fi; echo "$JOBGATE_ATTEMPT" > "$JOBGATE_RESULT_FILE"' % (d, d))
            w = s.start_worker(queues=[q], types={"t": cmd}, env=FAST)
            job = s.submit(type="t", queue=q)
            harness.wait_until(lambda: _read_int(d + "/pid") and _read_int(d + "/child"), 10,
                               "attempt 1 running")
            pids = [_read_int(d + "/pid"), _read_int(d + "/child")]
            try:
                s.redis("SHUTDOWN", "SAVE")
            except (harness.RedisError, OSError):
                pass
            t_down = time.monotonic()
            s.redis_proc.wait(10)
            s.redis_proc.expected_exit = True
            s.stop_redis()
            # the last renewal was sent before t_down: its lease ends by t_down + 2 s
            harness.wait_until(lambda: not any(_alive(p) for p in pids), 2 + 1.0,
                               "the job's processes to be gone by the end of its lease")
            gone_after = time.monotonic() - t_down
            check(w.alive(), "the worker itself keeps running", w.log()[-800:])
            check("lease ran out without a renewal" in w.log(), "the worker says why",
                  w.log()[-800:])
            check(gone_after > 0.3, "sanity: the job ran on while its lease held", gone_after)
            s.start_redis()
            done = s.wait_status(job["id"], ("done", "failed"), timeout=20)
            eq((done["status"], done["result"], done["attempts"]), ("done", 2, 2),
               "the job after Redis came back (attempt 1 failed, attempt 2 ran)")


def test_expired_lease_is_taken_back_by_a_worker_of_its_queue_only():
    """Expired leases are taken back by claims in the job's queue (any type), not by workers of
    other queues: until one happens, the job shows running (docs/redis.md, Leases)."""
    s = stack()
    q, other = unique_queue(), unique_queue()
    a = s.start_worker(queues=[q], types={"t": "sleep 60"}, env=FAST)
    job = s.submit(type="t", queue=q, max_attempts=1)
    s.wait_status(job["id"], "running")
    a.proc.expected_exit = True
    os.kill(a.pid, signal.SIGKILL)
    b = s.start_worker(queues=[other], types={"t": "sleep 60"}, env=FAST)
    time.sleep(2 + 2.0)            # the lease (2 s) ran out a while ago
    eq(s.job(job["id"])["status"], "running", "status with only another queue's worker live")
    b.stop()
    s.start_worker(queues=[q], types={"other": "true"}, env=FAST)
    failed = s.wait_status(job["id"], "failed", timeout=15)
    eq(failed["error"], "worker lost", "error once a worker of its queue claimed")


def test_cancel_after_the_job_exited_cleanly_leaves_it_done():
    """Cancel racing a normal exit: the job's process ended with 0 before its worker acted on
    the cancel, so the job is done (complete.lua keeps done over cancel_requested)."""
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as d:
        cmd = 'echo $$ > %s/pid; sleep 1; echo \'"finished"\' > "$JOBGATE_RESULT_FILE"' % d
        w = s.start_worker(queues=[q], types={"t": cmd})
        job = s.submit(type="t", queue=q)
        harness.wait_until(lambda: _read_int(d + "/pid"), 10, "the job running")
        pid = _read_int(d + "/pid")
        w.signal(signal.SIGSTOP)
        try:
            harness.wait_until(lambda: not _alive(pid), 10, "the job's process to exit")
            r = s.request("POST", "/jobs/%s/cancel" % job["id"])
            eq(r.status, 202, "cancel while the job still shows running")
        finally:
            w.signal(signal.SIGCONT)
        done = s.wait_status(job["id"], ("done", "cancelled", "failed"), timeout=10)
        eq((done["status"], done["result"], done["cancel_requested"]), ("done", "finished", True),
           "status, result and cancel_requested")


def test_cancel_of_a_job_that_then_exits_0_is_cancelled():
    """Once the worker stopped a job for a cancel, the attempt ends cancelled whatever the exit."""
    s = stack()
    q = unique_queue()
    cmd = ("trap 'echo \"\\\"late\\\"\" > \"$JOBGATE_RESULT_FILE\"; exit 0' TERM; "
           "echo started; while :; do sleep 0.05; done")
    s.start_worker(queues=[q], types={"t": cmd})
    job = s.submit(type="t", queue=q)
    harness.wait_until(lambda: "started" in lines_of(s, job["id"], "stdout"), 10, "the job running")
    eq(s.request("POST", "/jobs/%s/cancel" % job["id"]).status, 202, "cancel")
    done = s.wait_status(job["id"], ("done", "cancelled", "failed"), timeout=10)
    eq((done["status"], done["result"]), ("cancelled", None), "status and result")
