"""jobgate-worker's temporary directories (docs/worker.md, "What a job sees"): each job starts in
an empty directory of its own path, whatever the job before it in the same slot left or did to its
own (files, read-only directories, symlinks pointing out, a changed mode, its directory moved or
replaced by a symlink); each job's cwd is gone from its path once its attempt ends, nothing outside
is touched, and a worker leaves nothing of its own in $TMPDIR, whether it stops cleanly or is
killed with -9 (its keeper removes the finished jobs' directories beside the loop, and whatever is
left when the worker dies). Each test gives its worker a private, empty TMPDIR and lists it
afterwards."""

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


# a job that leaves only its result (the slot's directory is then handed to the next job emptied,
# under a new name)
CLEAN = 'echo "{\\"cwd\\":\\"$(pwd)\\"}" > "$JOBGATE_RESULT_FILE"'

# what a job finds in its cwd: the entries (none expected), its mode, its path
LOOK = ('l=$(ls -A | tr "\\n" " "); m=$(stat -c %a .); '
        'printf \'{"cwd":"%s","ls":"%s","mode":"%s"}\' "$(pwd)" "$l" "$m" > "$JOBGATE_RESULT_FILE"')

# jobs that do their worst to their cwd, each recording its path in $OUT/<type>
LITTER = ('pwd > "$OUT/litter" && mkdir -p ro/sub none && echo x > ro/sub/f && chmod 555 ro/sub && '
          'chmod 500 ro && chmod 000 none && echo y > .hidden && ln -s "$OUT/keep" link && '
          'ln -s "$OUT/keepdir" linkdir && mkfifo fifo && ' + CLEAN)
CHMOD = 'pwd > "$OUT/chmod" && ' + CLEAN + ' && chmod 755 .'
SWAP = ('d=$(pwd) && echo "$d" > "$OUT/swap" && cd / && rmdir "$d" && ln -s "$OUT/keepdir" "$d"')
MOVE = 'd=$(pwd) && echo "$d" > "$OUT/move" && echo z > z && mv "$d" "$OUT/moved"'


def test_each_job_starts_in_an_empty_directory_of_its_own_whatever_the_last_job_left():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as out:
        with open(os.path.join(out, "keep"), "w") as f:
            f.write("keep me")
        os.mkdir(os.path.join(out, "keepdir"))
        with open(os.path.join(out, "keepdir", "f"), "w") as f:
            f.write("keep me too")
        # one slot: every job runs in the directory its predecessor left, if any is reused
        w = s.start_worker(queues=[q], concurrency=1, env={"TMPDIR": tmp, "OUT": out},
                           types={"look": LOOK, "clean": CLEAN, "litter": LITTER,
                                  "chmod": CHMOD, "swap": SWAP, "move": MOVE})
        seen = []
        for before in ("clean", "clean", "litter", "chmod", "swap", "move", "clean"):
            j = s.submit(type=before, queue=q)
            eq(s.wait_status(j["id"], ("done", "failed"))["status"], "done",
               "status of a %s job" % before)
            j = s.submit(type="look", queue=q)
            done = s.wait_status(j["id"], ("done", "failed"))
            eq(done["status"], "done", "status of the job after a %s job" % before)
            r = done["result"]
            eq(r["ls"], "", "what a job finds in its cwd after a %s job" % before)
            eq(r["mode"], "700", "mode of a job's cwd after a %s job" % before)
            eq(os.path.dirname(r["cwd"]), tmp, "a job's cwd is in $TMPDIR")
            check(r["cwd"] not in seen, "a directory path of its own for each job", (r["cwd"], seen))
            seen.append(r["cwd"])
            for c in seen:
                check(not os.path.lexists(c), "a finished job's directory is gone from its path", c)
        for t in ("litter", "chmod", "swap", "move"):
            with open(os.path.join(out, t)) as f:
                d = f.read().strip()
            eq(os.path.dirname(d), tmp, "the %s job ran in $TMPDIR" % t)
            check(d not in seen, "a directory path of its own for each job", (d, seen))
        with open(os.path.join(out, "keep")) as f:
            eq(f.read(), "keep me", "a file a job's symlink pointed to")
        eq(sorted(os.listdir(os.path.join(out, "keepdir"))), ["f"],
           "a directory a job's symlinks pointed to")
        eq(sorted(os.listdir(os.path.join(out, "moved"))), ["z"],
           "a job's directory that the job moved out of $TMPDIR itself")
        eq(w.stop(), 0, "worker exit status on SIGTERM")
        eq(sorted(os.listdir(tmp)), [], "what the worker left in $TMPDIR after a clean stop")


# a job that leaves behind a process outside its process group (the job ends once that process
# has left the group), writing into its cwd for 1.5 s once the job has ended
ESCAPE = ('setsid -f sh -c \'touch "$OUT/out"; sleep 0.2; i=0; while [ $i -lt 30 ]; do echo x > late.$i; '
          'i=$((i+1)); sleep 0.05; done; touch "$OUT/escaped"\' </dev/null >/dev/null 2>&1; '
          'while [ ! -e "$OUT/out" ]; do sleep 0.01; done; ' + CLEAN)


def test_a_process_that_escaped_a_jobs_group_never_writes_into_a_later_jobs_directory():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as out:
        w = s.start_worker(queues=[q], concurrency=1, env={"TMPDIR": tmp, "OUT": out},
                           types={"escape": ESCAPE, "look": "sleep 0.5; " + LOOK})
        j = s.submit(type="escape", queue=q)
        eq(s.wait_status(j["id"], ("done", "failed"))["status"], "done", "status of the job")
        for _ in range(2):
            j = s.submit(type="look", queue=q)
            done = s.wait_status(j["id"], ("done", "failed"))
            eq(done["status"], "done", "status of a job after one whose process escaped")
            eq(done["result"]["ls"], "", "what the next job finds in its cwd")
        harness.wait_until(lambda: os.path.exists(os.path.join(out, "escaped")), 10,
                           "the escaped process to end")
        eq(w.stop(), 0, "worker exit status on SIGTERM")
        eq(sorted(os.listdir(tmp)), [], "what the worker left in $TMPDIR after a clean stop")


def test_finished_jobs_leave_nothing_in_tmpdir_after_a_clean_stop():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as out:
        w = s.start_worker(queues=[q], types={"messy": MESSY, "clean": CLEAN}, concurrency=4,
                           env={"TMPDIR": tmp, "OUT": out})
        jobs = [s.submit(type=t, queue=q) for t in ("messy", "clean") * 12]
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
        w = s.start_worker(queues=[q], types={"messy": MESSY, "clean": CLEAN, "hang": "sleep 60"},
                           concurrency=4, env={"TMPDIR": tmp, "OUT": out})
        for t in ("messy", "clean") * 6:
            j = s.submit(type=t, queue=q)
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
