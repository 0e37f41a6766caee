"""jobgate-worker, first part (contract section 9, issue 3): the demo types' results, logs and
errors as a client sees them over HTTP, claim order (priority, FIFO, run_at), the job's
environment, stdin, temporary directory and result file, progress, the 16 KiB line cut, and the
worker's flags (--help, --version, --check, --config).

The job log is read from its Redis stream (docs/redis.md) until jobgate-logs serves it."""

import json
import os
import subprocess
import tempfile
import time

import harness
from harness import check, eq, stack, unique_queue

# a worker suite: runs on one redis-server and again on a Redis Cluster (run.py)
REDIS = harness.REDIS_KINDS

ELLIPSIS = "\u2026"


# ---- helpers -----------------------------------------------------------------------------------

def log_entries(s, job_id, prefix="jobgate"):
    """The job's log as [(stream, line)], oldest first."""
    key = "%s:{%s}:log:%s" % (prefix, job_id[:8], job_id)
    out = []
    for _id, fields in s.redis("XRANGE", key, "-", "+"):
        d = dict(zip(fields[::2], fields[1::2]))
        out.append((d["stream"], d["line"]))
    return out


def lines_of(s, job_id, stream):
    return [line for st, line in log_entries(s, job_id) if st == stream]


def run_one(s, q, body, types=None, timeout=30, env=None):
    """Starts a worker on queue q, submits body there, waits for the job to finish."""
    body = dict(body)
    body["queue"] = q
    w = s.start_worker(queues=[q], types=types, env=env)
    job = s.submit(body)
    done = s.wait_status(job["id"], ("done", "failed", "cancelled"), timeout=timeout)
    return w, done


def _ms(t):
    return time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone \
        + int(t[20:23]) / 1000.0


# ---- the demo types --------------------------------------------------------------------------

def test_echo_result_is_the_payload():
    s = stack()
    payload = {"text": "h\u00e9llo \u2603", "n": [1, 2.5, None, True], "deep": {"a": {"b": []}}}
    w, job = run_one(s, unique_queue(), {"type": "echo", "payload": payload})
    eq(job["status"], "done", "status")
    harness.wait_until(lambda: "job finished" in w.log(), 5, "the worker to log the end")
    check("refused" not in w.log() and "level=error" not in w.log(),
          "expected no refusal or error in the worker's log", w.log()[-1500:])
    eq(job["result"], payload, "result of echo")
    eq(job["attempts"], 1, "attempts")
    eq(job["error"], None, "error")
    check(job["worker"], "expected the worker id in the job", job["worker"])
    check(job["started_at"] and job["finished_at"], "expected started_at and finished_at", job)
    eq(job["run_at"], None, "run_at of a finished job")


def test_echo_of_a_scalar_payload():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "echo", "payload": "just a string"})
    eq(job["result"], "just a string", "result")


def test_echo_result_is_the_payload_text_byte_for_byte():
    """echo.sh copies stdin with the shell's builtins: lines, blanks, backslashes, a CR, a
    payload without a final newline and a large one all come back exactly as submitted."""
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q])
    payloads = ['{\n  "a" : "x\\\\y\\n\\t",\n\t"b": [1,  2] \r\n, "c":"-n \\\\"}',
                '"\\\\"', '[%s]' % ",\n".join('"%s"' % ("\u00e9" * 50 + str(i)) for i in range(2000))]
    ids = []
    for p in payloads:
        body = '{"queue":"%s","type":"echo","payload":%s}' % (q, p)
        r = s.request("POST", "/jobs", body=body.encode(), headers={"Content-Type": "application/json"})
        eq(r.status, 202, "submit")
        ids.append(r.json()["id"])
    for jid, p in zip(ids, payloads):
        eq(s.wait_status(jid, ("done", "failed"))["status"], "done", "status of echo")
        raw = s.request("GET", "/jobs/" + jid).body.decode()
        check(any('"result":' + p + end in raw for end in ",}"),
              "expected the payload's text byte for byte as the result (%d bytes)" % len(p),
              raw[:600])


def test_system_log_records_the_life_of_a_job():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "echo", "payload": {}})
    system = lines_of(s, job["id"], "system")
    eq(system[0], "queued", "first system entry")
    check(system[1] == "attempt 1 started on worker %s" % job["worker"],
          "expected 'attempt 1 started on worker <id>' as second entry", system)
    eq(system[-1], "done", "last system entry")


def test_lines_prints_each_line_in_order():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "lines", "payload": {"count": 500}})
    eq(job["status"], "done", "status")
    eq(job["result"], {"count": 500}, "result")
    eq(lines_of(s, job["id"], "stdout"), ["line %d" % i for i in range(1, 501)], "stdout lines")


def test_sleep_logs_steps_and_progress():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "sleep", "payload": {"ms": 300, "steps": 3}})
    eq(job["result"], {"slept_ms": 300}, "result")
    eq(job["progress"], 100, "progress once done")
    eq(lines_of(s, job["id"], "stdout"), ["step 1/3", "step 2/3", "step 3/3"], "stdout lines "
       "(the ::progress lines are not logged)")


def test_progress_is_visible_while_running():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q])
    job = s.submit(type="sleep", queue=q, payload={"ms": 3000, "steps": 3})
    seen = harness.wait_until(lambda: (lambda j: j if j["progress"] is not None else None)(
        s.job(job["id"])), 10, "a progress value while running")
    eq(seen["status"], "running", "status while progress is reported")
    check(seen["progress"] in (33, 66), "expected progress 33 or 66 while running", seen["progress"])


def test_fail_error_is_exit_status_and_last_stderr_line():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "fail", "max_attempts": 1,
                                         "payload": {"message": "first\nthe disk is full"}})
    eq(job["status"], "failed", "status")
    eq(job["error"], "exit status 1: the disk is full", "error")
    eq(job["result"], None, "result of a failed job")
    eq(lines_of(s, job["id"], "stderr"), ["first", "the disk is full"], "stderr lines")
    eq(lines_of(s, job["id"], "system")[-1], "failed: exit status 1: the disk is full",
       "last system entry")


def test_flaky_retries_then_succeeds():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "flaky", "payload": {"fail_times": 2}},
                     env={"JOBGATE_RETRY_BASE": "0.1"})
    eq(job["status"], "done", "status")
    eq(job["attempts"], 3, "attempts")
    eq(job["result"], {"attempt": 3}, "result")
    eq(job["error"], None, "error once done")
    system = lines_of(s, job["id"], "system")
    failed = [x for x in system if x.startswith("attempt ") and " failed: " in x]
    eq(len(failed), 2, "failed attempts in the log: %r" % system)
    check(failed[0].startswith("attempt 1 failed: exit status 1: flaky: attempt 1")
          and failed[0].endswith(" s") and "; retry in " in failed[0],
          "expected 'attempt 1 failed: exit status 1: ...; retry in S s'", failed[0])


def test_retry_waits_in_queued_with_run_at():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q], env={"JOBGATE_RETRY_BASE": "3"})
    job = s.submit(type="flaky", queue=q, payload={"fail_times": 1})
    j = harness.wait_until(lambda: (lambda x: x if x["attempts"] == 1 and x["status"] == "queued"
                                    else None)(s.job(job["id"])), 10, "the job queued for retry")
    check(j["run_at"] is not None, "expected run_at while waiting for the retry", j)
    # the delay counts from the attempt's end (when complete.lua ran), not from its start: the
    # log entry that says so carries that time
    ended = [(int(d["ts"]), d["line"]) for d in
             (dict(zip(f[::2], f[1::2])) for _i, f in
              s.redis("XRANGE", "jobgate:{%s}:log:%s" % (job["id"][:8], job["id"]), "-", "+"))
             if d["line"].startswith("attempt 1 failed: ")]
    eq(len(ended), 1, "log entries 'attempt 1 failed: ...'")
    ts, line = ended[0]
    said = float(line.rsplit("; retry in ", 1)[1].split()[0])
    check(2.4 <= said <= 3.6, "expected a retry in about 3 s (+-20 %)", line)
    delay = _ms(j["run_at"]) - ts / 1000.0
    check(abs(delay - said) <= 0.06, "expected run_at %.1f s after the attempt ended" % said,
          delay)
    check(j["error"].startswith("exit status 1: "), "expected the attempt's error", j["error"])
    done = s.wait_status(job["id"], "done", timeout=15)
    check(_ms(done["started_at"]) >= _ms(j["run_at"]) - 0.01,
          "expected attempt 2 not before run_at", (done["started_at"], j["run_at"]))


def test_last_failed_attempt_ends_failed():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "flaky", "max_attempts": 2,
                                         "payload": {"fail_times": 5}},
                     env={"JOBGATE_RETRY_BASE": "0.05"})
    eq(job["status"], "failed", "status")
    eq(job["attempts"], 2, "attempts")
    eq(job["run_at"], None, "run_at of a failed job")
    check(job["error"].startswith("exit status 1: flaky: attempt 2"), "error", job["error"])


# ---- results, errors, output ---------------------------------------------------------------------

def test_empty_result_file_is_null():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "t"}, types={"t": "true"})
    eq(job["status"], "done", "status")
    eq(job["result"], None, "result of a job that wrote no result file")


def test_invalid_json_result_fails_the_attempt():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "t", "max_attempts": 1},
                     types={"t": "printf '{\"a\":' > \"$JOBGATE_RESULT_FILE\""})
    eq(job["status"], "failed", "status")
    check(job["error"].startswith("invalid JSON in result file"), "error says why", job["error"])


def test_result_with_duplicate_members_is_invalid():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "t", "max_attempts": 1},
                     types={"t": "printf '{\"a\":1,\"a\":2}' > \"$JOBGATE_RESULT_FILE\""})
    eq(job["status"], "failed", "status")
    check(job["error"].startswith("invalid JSON in result file"), "error says why", job["error"])


def test_exit_status_without_stderr():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "t", "max_attempts": 1}, types={"t": "exit 7"})
    eq(job["error"], "exit status 7", "error of an exit without stderr")


def test_killed_by_signal():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "t", "max_attempts": 1},
                     types={"t": "echo going >&2; kill -9 $$"})
    eq(job["error"], "killed by signal 9", "error")


def test_processes_a_job_leaves_in_its_group_are_killed_when_it_exits():
    """The leader exits at once, leaving a background child in its process group (holding the
    stdout pipe): the worker kills the group before it reaps the leader, and the job is done."""
    s = stack()
    with tempfile.TemporaryDirectory() as d:
        cmd = ('sleep 60 & echo $! > %s/child; echo \'{"left":true}\' > "$JOBGATE_RESULT_FILE"'
               % d)
        _, job = run_one(s, unique_queue(), {"type": "t", "max_attempts": 1}, types={"t": cmd})
        eq(job["status"], "done", "status")
        eq(job["result"], {"left": True}, "result")
        with open(d + "/child") as f:
            child = int(f.read().strip())

        def gone():
            try:
                with open("/proc/%d/stat" % child) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                return True
        harness.wait_until(gone, 5, "the job's background child to be killed")


def test_payload_on_stdin_exactly_as_submitted():
    s = stack()
    q = unique_queue()
    body = '{"queue":"%s","type":"t","payload":{"b" : [1, 2],  "a":"\\u00e9"}}' % q
    s.start_worker(queues=[q], types={"t": "cat > stdin.txt; "
                                           "python3 -c 'import json,sys; print(json.dumps(open(\"stdin.txt\").read()))' "
                                           "> \"$JOBGATE_RESULT_FILE\""})
    r = s.request("POST", "/jobs", body=body, headers={"Content-Type": "application/json"})
    eq(r.status, 202, "submit")
    job = s.wait_status(r.json()["id"], ("done", "failed"))
    eq(job["result"], '{"b" : [1, 2],  "a":"\\u00e9"}', "the payload text the job read on stdin")


def test_job_environment_and_temporary_directory():
    s = stack()
    q = unique_queue()
    script = ("python3 -c 'import json,os; e=os.environ; json.dump({k: e.get(k) for k in "
              "(\"JOBGATE_JOB_ID\",\"JOBGATE_JOB_TYPE\",\"JOBGATE_QUEUE\",\"JOBGATE_ATTEMPT\","
              "\"JOBGATE_RESULT_FILE\",\"JOBGATE_FENCE\",\"REDIS_URL\")} | {\"cwd\": os.getcwd(), "
              "\"pgid_is_pid\": os.getpgid(0) == os.getppid() or os.getpgid(0) == os.getpid()}, "
              "open(e[\"JOBGATE_RESULT_FILE\"], \"w\"))'")
    _, job = run_one(s, q, {"type": "envt"}, types={"envt": script})
    r = job["result"]
    eq(r["JOBGATE_JOB_ID"], job["id"], "JOBGATE_JOB_ID")
    eq(r["JOBGATE_JOB_TYPE"], "envt", "JOBGATE_JOB_TYPE")
    eq(r["JOBGATE_QUEUE"], q, "JOBGATE_QUEUE")
    eq(r["JOBGATE_ATTEMPT"], "1", "JOBGATE_ATTEMPT")
    check(r["JOBGATE_FENCE"] and r["JOBGATE_FENCE"].isdigit(), "JOBGATE_FENCE is a number",
          r["JOBGATE_FENCE"])
    eq(r["REDIS_URL"], None, "REDIS_URL (a secret) in the job's environment")
    eq(os.path.dirname(r["JOBGATE_RESULT_FILE"]), r["cwd"], "result file inside the job's cwd")
    check(os.path.basename(r["cwd"]).startswith("jobgate-"), "a fresh temp dir as cwd", r["cwd"])
    check(r["pgid_is_pid"], "the job runs in its own process group", r)
    check(not os.path.exists(r["cwd"]), "the temp dir is removed after the job", r["cwd"])


def test_attempt_number_grows_with_retries():
    s = stack()
    _, job = run_one(s, unique_queue(),
                     {"type": "t", "max_attempts": 3},
                     types={"t": "[ \"$JOBGATE_ATTEMPT\" = 3 ] && echo \"$JOBGATE_ATTEMPT\" > "
                                 "\"$JOBGATE_RESULT_FILE\" || exit 1"},
                     env={"JOBGATE_RETRY_BASE": "0.05"})
    eq(job["result"], 3, "result written by attempt 3")


def test_long_line_is_cut_at_16_kib_with_an_ellipsis():
    s = stack()
    script = ("python3 -c 'import sys; sys.stdout.write(\"x\" * 20000 + \"\\n\" + "
              "\"\\u00e9\" * 9000 + \"\\nshort\\n\" + \"y\" * 16384 + \"\\n\")'")
    _, job = run_one(s, unique_queue(), {"type": "t"}, types={"t": script})
    out = lines_of(s, job["id"], "stdout")
    eq(len(out), 4, "stdout entries")
    eq(len(out[0].encode()), 16384, "bytes of a cut ASCII line")
    eq(out[0], "x" * 16381 + ELLIPSIS, "cut ASCII line")
    check(len(out[1].encode()) <= 16384 and out[1].endswith(ELLIPSIS)
          and set(out[1][:-1]) == {"\u00e9"}, "a cut line stays valid UTF-8 within 16 KiB",
          (len(out[1].encode()), out[1][-3:]))
    eq(out[2], "short", "the line after cut ones")
    eq(out[3], "y" * 16384, "a line of exactly 16 KiB is kept whole")


def test_invalid_utf8_is_repaired():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "t"},
                     types={"t": "printf 'ok \\377\\376 end\\n'; printf 'no newline at end'"})
    eq(lines_of(s, job["id"], "stdout"), ["ok \ufffd\ufffd end", "no newline at end"],
       "stdout lines")


def test_progress_line_forms():
    s = stack()
    script = "echo '::progress 12.7'; echo '::progress nope'; echo '::progress 250'"
    _, job = run_one(s, unique_queue(), {"type": "t"}, types={"t": script})
    eq(job["progress"], 100, "progress after '::progress 250' (clamped)")
    eq(lines_of(s, job["id"], "stdout"), ["::progress nope"], "lines that are not progress")


# ---- claim order -------------------------------------------------------------------------------

def _order_type(path):
    return {"t": "echo \"$JOBGATE_JOB_ID\" >> %s" % path}


def test_priority_first_then_fifo():
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "order")
        ids = {}
        for name, prio in (("a0", 0), ("b5", 5), ("c0", 0), ("d-3", -3), ("e5", 5), ("f0", 0)):
            ids[s.submit(type="t", queue=q, priority=prio)["id"]] = name
        s.start_worker(queues=[q], types=_order_type(path))
        harness.wait_until(lambda: os.path.exists(path) and
                           len(open(path).read().split()) == 6, 20, "six jobs run")
        got = [ids[x] for x in open(path).read().split()]
        eq(got, ["b5", "e5", "a0", "c0", "f0", "d-3"], "run order (priority, then FIFO)")


def test_delay_is_respected():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q])
    job = s.submit(type="echo", queue=q, delay=1.5)
    check(job["run_at"] is not None, "run_at of a delayed job", job)
    time.sleep(0.8)
    eq(s.job(job["id"])["status"], "queued", "status before the delay ran out")
    done = s.wait_status(job["id"], "done", timeout=10)
    check(_ms(done["started_at"]) - _ms(done["created_at"]) >= 1.5,
          "expected the job to start no earlier than created_at + delay",
          (done["created_at"], done["started_at"]))
    eq(done["run_at"], None, "run_at once started")


def test_worker_claims_only_its_queues_and_types():
    s = stack()
    q, other = unique_queue(), unique_queue()
    s.start_worker(queues=[q], types=["echo"])
    mine = s.submit(type="echo", queue=q)
    wrong_type = s.submit(type="lines", queue=q)
    wrong_queue = s.submit(type="echo", queue=other)
    s.wait_status(mine["id"], "done")
    time.sleep(1.2)
    eq(s.job(wrong_type["id"])["status"], "queued", "a job of another type")
    eq(s.job(wrong_queue["id"])["status"], "queued", "a job of another queue")


def test_queues_are_claimed_in_the_order_given():
    s = stack()
    q1, q2 = unique_queue(), unique_queue()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "order")
        later = [s.submit(type="t", queue=q2)["id"] for _ in range(3)]
        first = [s.submit(type="t", queue=q1)["id"] for _ in range(3)]
        s.start_worker(queues=[q1, q2], types=_order_type(path))
        harness.wait_until(lambda: os.path.exists(path) and
                           len(open(path).read().split()) == 6, 20, "six jobs run")
        eq(open(path).read().split(), first + later, "jobs of the first queue run first")


def test_concurrency_runs_jobs_at_the_same_time():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q], concurrency=4)
    t0 = time.monotonic()
    jobs = [s.submit(type="sleep", queue=q, payload={"ms": 1500}) for _ in range(4)]
    for j in jobs:
        s.wait_status(j["id"], "done", timeout=20)
    starts = sorted(_ms(s.job(j["id"])["started_at"]) for j in jobs)
    check(starts[-1] - starts[0] < 1.4, "expected the four jobs to start together",
          [round(x - starts[0], 3) for x in starts])
    check(time.monotonic() - t0 > 1.4, "sanity: jobs took their time")


def test_heartbeat_announces_the_worker():
    s = stack()
    q = unique_queue()
    w = s.start_worker(queues=[q], types=["echo", "sleep"], concurrency=3, args=["--id", "hb-" + q])
    wid = "hb-" + q
    info = harness.wait_until(lambda: (lambda h: dict(zip(h[::2], h[1::2])) if h else None)(
        s.redis("HGETALL", "jobgate:worker:" + wid)), 10, "the worker's heartbeat key")
    eq(info["id"], wid, "id")
    eq(info["queues"], q, "queues")
    eq(info["types"], "echo,sleep", "types")
    eq(info["concurrency"], "3", "concurrency")
    eq(info["pid"], str(w.pid), "pid")
    check(int(s.redis("TTL", "jobgate:worker:" + wid)) > 0, "the heartbeat key expires")
    check(s.redis("ZSCORE", "jobgate:workers", wid) is not None, "listed in jobgate:workers")
    eq(w.stop(), 0, "exit code on SIGTERM")
    eq(s.redis("EXISTS", "jobgate:worker:" + wid), 0, "heartbeat key removed on a clean stop")


def test_idle_worker_stops_at_once_on_sigterm():
    s = stack()
    w = s.start_worker(queues=[unique_queue()])
    time.sleep(0.3)
    t0 = time.monotonic()
    eq(w.stop(), 0, "exit code")
    check(time.monotonic() - t0 < 3, "an idle worker exits promptly", time.monotonic() - t0)


# ---- flags -------------------------------------------------------------------------------------

def _run(args, env=None, timeout=20):
    e = harness._base_env()
    e.update(env or {})
    p = subprocess.run([harness.binary("worker")] + args, env=e, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_help_and_version():
    rc, out, _ = _run(["--help"])
    eq(rc, 0, "--help exit code")
    check("--type NAME=COMMAND" in out and "--concurrency" in out, "usage text", out)
    rc, out, _ = _run(["--version"])
    eq(rc, 0, "--version exit code")
    check(out.startswith("jobgate-worker "), "version line", out)


def test_bad_arguments_exit_2_with_a_message():
    for args in (["--type", "echo"], ["--type", "Bad=cmd"], ["--concurrency", "0", "--type", "a=b"],
                 ["--queue", "no/slash", "--type", "a=b"], ["--frobnicate"], []):
        rc, _, err = _run(args)
        eq(rc, 2, "exit code of %r" % args)
        check(err.startswith("jobgate-worker: "), "message names the program", err)


def test_check_masks_the_redis_password():
    s = stack()
    rc, out, err = _run(["--check", "--type", "echo=cat"],
                        env={"REDIS_URL": "redis://:sekrit-pw@127.0.0.1:1/0"})
    eq(rc, 1, "--check exit code with Redis unreachable")
    check("sekrit-pw" not in out + err, "the password is never printed", out + err)
    check("redis=unreachable" in out, "says Redis is unreachable", out)
    rc, out, _ = _run(["--check", "--type", "echo=cat"], env={"REDIS_URL": s.redis_url})
    eq(rc, 0, "--check exit code with Redis up")
    check("type=echo=cat" in out and "redis=ok" in out, "prints the settings", out)


def test_config_file_gives_the_settings():
    s = stack()
    q = unique_queue()
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("# worker settings\nqueue = %s\ntype = echo=%s\nconcurrency=2\n\ngrace 3\n"
                % (q, os.path.join(harness.JOBS_DIR, "echo.sh")))
        path = f.name
    try:
        rc, out, err = _run(["--config", path, "--check"], env={"REDIS_URL": s.redis_url})
        eq(rc, 0, "--check exit code: " + err)
        for want in ("queue=" + q, "concurrency=2", "grace=3", "type=echo="):
            check(want in out, "expected %r in --check output" % want, out)
        w = s.start_worker(queues=[], types={}, args=["--config", path])
        job = s.submit(type="echo", queue=q, payload=[1])
        eq(s.wait_status(job["id"], "done")["result"], [1], "result from a worker configured "
           "by file")
        w.stop()
    finally:
        os.unlink(path)


def test_done_result_of_a_cache_job_is_stored_in_the_result_cache():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q])
    r = s.request("POST", "/jobs", json={"type": "echo", "queue": q, "cache": True,
                                         "cache_ttl": 500, "payload": {"k": q}})
    eq(r.status, 202, "submit with cache")
    job = s.wait_status(r.json()["id"], "done")
    key = "jobgate:cache:" + job["cache_key"]
    eq(json.loads(s.redis("GET", key)), {"k": q}, "cached result")
    ttl = int(s.redis("TTL", key))
    check(0 < ttl <= 500, "expected the entry to expire after cache_ttl", ttl)


def test_failed_cache_job_is_not_cached():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q])
    r = s.request("POST", "/jobs", json={"type": "fail", "queue": q, "cache": True,
                                         "max_attempts": 1, "payload": {"message": q}})
    eq(r.status, 202, "submit with cache")
    job = s.wait_status(r.json()["id"], "failed")
    eq(s.redis("EXISTS", "jobgate:cache:" + job["cache_key"]), 0, "a cache entry for a failure")


# ---- the worker protocol as specified (issue 12; docs/worker.md "Worker protocol") -------------

def test_single_path_is_executed_directly_and_a_shell_command_reports_the_shells_exit():
    """A single path is exec'd (like `sh -c 'exec PATH'`): a job that kills itself with -9 is
    `killed by signal 9`. A command with anything more runs under /bin/sh -c, whose shell reports
    a program killed by signal S as exit status 128+S."""
    s = stack()
    q = unique_queue()
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        path = os.path.join(d, "selfkill.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\necho dying >&2\nkill -9 $$\n")
        os.chmod(path, 0o755)
        s.start_worker(queues=[q], types={"direct": path, "exec": "exec " + path,
                                          "shell": path + " an-argument"})
        jobs = {t: s.submit(type=t, queue=q, max_attempts=1)["id"]
                for t in ("direct", "exec", "shell")}
        got = {t: s.wait_status(i, ("done", "failed"))["error"] for t, i in jobs.items()}
    eq(got, {"direct": "killed by signal 9", "exec": "killed by signal 9",
             "shell": "exit status 137: Killed"},   # dash's own stderr line about its child
       "errors of a job that kills itself")


def test_error_names_the_last_non_empty_stderr_line():
    s = stack()
    _, job = run_one(s, unique_queue(), {"type": "t", "max_attempts": 1},
                     types={"t": "echo 'the real cause' >&2; echo >&2; printf ' \\t\\n' >&2; "
                                 "echo 'on stdout'; exit 3"})
    eq(job["error"], "exit status 3: the real cause", "error")
    eq(lines_of(s, job["id"], "stderr"), ["the real cause", "", " \t"],
       "stderr lines (blank ones are still logged)")


def test_crlf_line_ends_lose_their_carriage_return():
    s = stack()
    script = ("python3 -c 'import sys; o=sys.stdout; o.write(\"a\\r\\nin\\rside\\r\\n\\r\\n\" + "
              "\"y\" * 16384 + \"\\r\\nlast\\r\"); o.flush(); sys.stderr.write(\"bad\\r\\n\"); "
              "sys.exit(2)'")
    _, job = run_one(s, unique_queue(), {"type": "t", "max_attempts": 1}, types={"t": script})
    eq(lines_of(s, job["id"], "stdout"), ["a", "in\rside", "", "y" * 16384, "last"],
       "stdout lines of CRLF output")
    eq(job["error"], "exit status 2: bad", "error (no \\r in it)")


def test_error_texts_of_results_and_timeouts():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q], types={
        "big": "head -c 16777217 /dev/zero | tr '\\000' 1 > \"$JOBGATE_RESULT_FILE\"",
        "bad": "printf '[1,' > \"$JOBGATE_RESULT_FILE\"",
        "slow": "sleep 30"}, concurrency=3)
    ids = {"big": s.submit(type="big", queue=q, max_attempts=1)["id"],
           "bad": s.submit(type="bad", queue=q, max_attempts=1)["id"],
           "slow": s.submit(type="slow", queue=q, max_attempts=1, timeout=1.25)["id"]}
    got = {t: s.wait_status(i, ("done", "failed"), timeout=30)["error"] for t, i in ids.items()}
    eq(got["big"], "result file larger than 16777216 bytes", "error of a result over 16 MiB")
    check(got["bad"].startswith("invalid JSON in result file: "), "error of an invalid result",
          got["bad"])
    eq(got["slow"], "timeout after 1.25 s", "error of a timeout (T as given, in seconds)")


def test_progress_parsing_rules():
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q], types={
        "neg": "echo '::progress 40'; echo '::progress -5'",
        "forms": "echo '::progress \t 42 '; echo '::progress 50' >&2; echo '::progress 7%'; "
                 "echo '::progress abc'; echo '::progress'; echo ' ::progress 60'; "
                 "echo '::progress 1 2'; echo '::progress +70'; echo '::progress 1e2'; "
                 "echo '::PROGRESS 80'"}, concurrency=2)
    neg = s.submit(type="neg", queue=q)["id"]
    forms = s.submit(type="forms", queue=q)["id"]
    eq(s.wait_status(neg, "done")["progress"], 0, "progress after '::progress -5'")
    eq(s.wait_status(forms, "done")["progress"], 42, "progress after the forms that are not "
       "progress lines")
    eq(lines_of(s, forms, "stdout"), ["::progress 7%", "::progress abc", "::progress",
                                      " ::progress 60", "::progress 1 2", "::progress +70",
                                      "::progress 1e2", "::PROGRESS 80"],
       "stdout lines that are logged as they are")
    eq(lines_of(s, forms, "stderr"), ["::progress 50"], "a progress line on stderr is logged")


def test_heartbeat_version_is_the_program_version_and_stale_members_are_reaped():
    s = stack()
    q = unique_queue()
    now_ms = int(s.redis("TIME")[0]) * 1000
    ghost, fresh = "ghost-" + q, "fresh-" + q
    s.redis("ZADD", "jobgate:workers", now_ms - 61000, ghost, now_ms - 1000, fresh)
    try:
        wid = "hbv-" + q
        s.start_worker(queues=[q], args=["--id", wid])
        harness.wait_until(lambda: s.redis("ZSCORE", "jobgate:workers", ghost) is None, 15,
                           "a member not seen for over 60 s to be removed by a heartbeat")
        check(s.redis("ZSCORE", "jobgate:workers", fresh) is not None,
              "a member seen a second ago stays")
        info = dict(zip(*[iter(s.redis("HGETALL", "jobgate:worker:" + wid))] * 2))
        _, out, _ = _run(["--version"])
        eq(info["version"], out.split()[1], "heartbeat version = the program's --version")
        seen = int(info["last_seen"])
        check(abs(seen - now_ms) < 10000, "last_seen is in Redis' clock (ms)", (seen, now_ms))
    finally:
        s.redis("ZREM", "jobgate:workers", ghost, fresh)


def test_check_prints_the_workers_own_settings_and_what_is_missing():
    s = stack()
    rc, out, err = _run(["--check", "--queue", "a", "--queue", "b", "--concurrency", "3",
                         "--grace", "7"], env={"REDIS_URL": s.redis_url, "JOBGATE_LEASE": "12"})
    eq(rc, 1, "--check exit code without a type")
    for want in ("queue=a\nqueue=b\n", "concurrency=3\n", "grace=7\n", "JOBGATE_LEASE=12\n",
                 "JOBGATE_RETRY_BASE=", "JOBGATE_KEY_PREFIX=jobgate\n", "REDIS_URL=",
                 "missing=no job types: give at least one --type NAME=COMMAND\n", "redis=ok\n"):
        check(want in out, "expected %r in --check output" % want, out)
    for web in ("threads=", "socket=", "max_streams=", "JOBGATE_MAX_BODY", "JOBGATE_PREFIX="):
        check(web not in out, "a web program's setting %r in the worker's --check" % web, out)


def _script(name):
    with open(os.path.join(harness.ROOT, "redis", name + ".lua"), "rb") as f:
        return f.read()


def test_scripts_as_shipped_speak_the_documented_protocol():
    """What a worker in another language does: load redis/*.lua byte for byte (the C worker's
    SHA-1s are the same), claim with the documented arguments and read the documented reply
    types, send a log batch (at most 1000 lines), complete."""
    import hashlib
    s = stack()
    q = unique_queue()
    s.start_worker(queues=[q])
    s.wait_status(s.submit(type="echo", queue=q)["id"], "done")
    shas = {n: hashlib.sha1(_script(n)).hexdigest() for n in ("claim", "log", "renew", "complete")}
    eq(s.redis("SCRIPT", "EXISTS", *shas.values()), [1, 1, 1, 1],
       "the C worker loaded the shipped files byte for byte (same SHA-1)")

    q2 = unique_queue()   # served by no worker: this test is its worker
    job = s.submit(type="mine", queue=q2, payload={"x": 1}, timeout=2.5)
    tag, P = job["id"][:8], "jobgate:{%s}:" % job["id"][:8]
    lease_ms = 30000
    rep = s.redis("EVALSHA", shas["claim"], 4, P + "q:%s:delayed" % q2, P + "q:%s:running" % q2,
                  P + "q:%s:counts" % q2, P + "q:%s:ready:mine" % q2,
                  P, q2, "proto-" + q2, 5, lease_ms, 1000, 1000, 86400, 10000, P + "events",
                  P + "wake:" + q2)
    redis_now = int(s.redis("TIME")[0]) * 1000
    next_run_at, taken, now = rep[0], rep[1], rep[2]
    eq((next_run_at, taken, len(rep)), (-1, 0, 4), "next_run_at, taken_back, jobs claimed + 3")
    check(isinstance(now, int) and abs(now - redis_now) < 5000, "now: Redis' clock, an integer",
          now)
    jid, jtype, attempt, fence, timeout_ms, lease_until, payload, ckey, cttl = rep[3]
    eq((ckey, cttl), ("", 0), "cache_key, cache_ttl of a job without the result cache")
    check(isinstance(payload, str), "payload is a string", payload)
    eq((jid, jtype, json.loads(payload)), (job["id"], "mine", {"x": 1}), "id, type, payload")
    eq((attempt, timeout_ms, lease_until - now), (1, 2500, lease_ms),
       "attempt, timeout_ms, lease_until - now (integers)")
    check(isinstance(fence, int), "fence is an integer", fence)
    eq(s.job(job["id"])["status"], "running", "status after the claim")
    eq(s.redis("TYPE", P + "log:" + jid), "stream", "sanity: the log exists")
    cached = s.submit(type="mine", queue=q2, payload={"x": 2}, cache=True, cache_ttl=77)
    rep = s.redis("EVALSHA", shas["claim"], 4, P + "q:%s:delayed" % q2, P + "q:%s:running" % q2,
                  P + "q:%s:counts" % q2, P + "q:%s:ready:mine" % q2,
                  P, q2, "proto-" + q2, 5, lease_ms, 1000, 1000, 86400, 10000, P + "events",
                  P + "wake:" + q2)
    eq((rep[3][0], rep[3][7], rep[3][8]), (cached["id"], cached["cache_key"], 77),
       "id, cache_key, cache_ttl of a job submitted with cache true")

    keys = [P + "job:" + jid, P + "log:" + jid]
    too_many = []
    for i in range(1001):
        too_many += ["stdout", "l%d" % i]
    r = s.redis_pipeline([["EVALSHA", shas["log"], 2] + keys +
                          [jid, fence, 10000, P + "events", "", ""] + too_many])[0]
    check(isinstance(r, harness.RedisError) and "1000" in str(r),
          "expected an error reply for 1001 lines in one log.lua call", r)
    eq(lines_of(s, jid, "stdout"), [], "lines after the refused batch")
    r = s.redis("EVALSHA", shas["log"], 2, *keys, jid, fence, 10000, P + "events", "50", "",
                *too_many[:2000])
    eq(r, [1, 0], "log.lua reply for 1000 lines")
    eq(len(lines_of(s, jid, "stdout")), 1000, "lines logged")
    r = s.redis("EVALSHA", shas["renew"], 2, keys[0], P + "q:%s:running" % q2, jid, fence, lease_ms)
    check(r[:2] == [1, 0] and isinstance(r[2], int) and r[2] >= lease_until,
          "renew.lua reply {1, cancel_requested, lease_until} (integers)", r)
    r = s.redis("EVALSHA", shas["complete"], 6, *keys, P + "q:%s:running" % q2,
                P + "q:%s:delayed" % q2, P + "q:%s:counts" % q2, P + "q:%s:ready:mine" % q2,
                jid, fence, "done", '{"ok":true}', 1000, 1000, 86400, 10000, P + "events",
                P + "wake:" + q2)
    eq(r, [1, "done"], "complete.lua reply")
    j = s.job(jid)
    eq((j["status"], j["result"], j["progress"]), ("done", {"ok": True}, 50), "the job over HTTP")
