"""jobgate-worker's temporary directories (docs/worker.md, "What a job sees"): each job's cwd is
gone once its attempt ends, and a worker leaves nothing of its own in $TMPDIR, whether it stops
cleanly or is killed with -9 (its keeper removes the finished jobs' directories beside the loop,
and whatever is left when the worker dies). Each test gives its worker a private, empty TMPDIR
and lists it afterwards."""

import os
import signal
import tempfile

import harness
from harness import check, eq, stack, unique_queue

# a worker suite: runs on one redis-server and again on a Redis Cluster (run.py)
REDIS = harness.REDIS_KINDS

# a job that leaves files, a nested directory and a read-only file behind in its cwd
MESSY = ('mkdir -p a/b/c && echo x > a/b/c/f && echo y > ro && chmod 400 ro && pwd > "$OUT/$$" && '
         'echo "{\\"cwd\\":\\"$(pwd)\\"}" > "$JOBGATE_RESULT_FILE"')


def test_finished_jobs_leave_nothing_in_tmpdir_after_a_clean_stop():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as out:
        w = s.start_worker(queues=[q], types={"messy": MESSY}, concurrency=4,
                           env={"TMPDIR": tmp, "OUT": out})
        jobs = [s.submit(type="messy", queue=q) for _ in range(12)]
        cwds = []
        for j in jobs:
            done = s.wait_status(j["id"], ("done", "failed"))
            eq(done["status"], "done", "status of a job that leaves files behind")
            cwds.append(done["result"]["cwd"])
            check(not os.path.exists(done["result"]["cwd"]),
                  "the job's directory is gone once its attempt has ended", done["result"]["cwd"])
        eq(len(set(cwds)), len(cwds), "distinct directories, one per job")
        check(all(os.path.dirname(c) == tmp for c in cwds), "jobs' directories in $TMPDIR", cwds)
        eq(w.stop(), 0, "worker exit status on SIGTERM")
        eq(sorted(os.listdir(tmp)), [], "what the worker left in $TMPDIR after a clean stop")


def test_a_worker_killed_with_9_leaves_nothing_in_tmpdir():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as out:
        w = s.start_worker(queues=[q], types={"messy": MESSY, "hang": "sleep 60"}, concurrency=4,
                           env={"TMPDIR": tmp, "OUT": out})
        for _ in range(6):
            j = s.submit(type="messy", queue=q)
            eq(s.wait_status(j["id"], ("done", "failed"))["status"], "done", "status")
        hang = s.submit(type="hang", queue=q)
        harness.wait_until(lambda: 'msg="job started" job=%s' % hang["id"] in w.log(), 10,
                           "the hanging job to start")
        w.proc.expected_exit = True
        os.kill(w.pid, signal.SIGKILL)
        try:
            harness.wait_until(lambda: os.listdir(tmp) == [], 10,
                               "the keeper to empty $TMPDIR after the worker was killed")
        except AssertionError:
            pass
        eq(sorted(os.listdir(tmp)), [], "what a worker killed with -9 left in $TMPDIR")
