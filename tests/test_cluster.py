"""jobgate on a Redis Cluster (issue 16): REDIS_URL=redis+cluster://... with a real cluster of 3
masters and 3 replicas started per test (tests/cluster.py), the real programs behind nginx and a
real worker. What a user sees: jobs of many queues land on the master of their queue's slot, and
the programs keep answering right when a slot moves (MOVED), while it moves (ASK) and when a
master dies and its replica takes over, with no restart."""

import contextlib
import os
import subprocess
import threading
import time

import harness
from cluster import Cluster, keys_per_master
from harness import check, eq

PROGRAMS = ("submit", "status", "logs", "admin")


@contextlib.contextmanager
def _cluster_stack(**kw):
    with Cluster() as c:
        s = harness.Stack(env={"REDIS_URL": c.url}, programs=PROGRAMS, name="cluster", **kw)
        try:
            yield c, s
        finally:
            s.stop()


def _slot_of_job(c, job_id):
    return c.slot_of("{%s}" % job_id.split(".")[0])


def _run(s, queue, payload, timeout=20):
    job = s.submit(type="echo", queue=queue, payload=payload)
    return s.wait_status(job["id"], "done", timeout)


def _stat(node, section, name):
    """A counter of INFO section (errorstat_MOVED:count=3 -> 3; cmdstat_asking:calls=2 -> 2)."""
    for line in node.call("INFO", section).splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":", 1)[1].split(",")[0].split("=")[1])
    return 0


def _get_ok_or_503(s, path, seen):
    r = s.request("GET", path)
    seen.append(r.status)
    if r.status not in (200, 503):
        raise AssertionError("GET %s: expected 200 or 503, got %r" % (path, r))
    return r if r.status == 200 else None


def test_check_shows_the_cluster_seeds_without_the_password():
    with Cluster() as c:
        url = c.url.replace("redis+cluster://", "redis+cluster://app:s3cret-pw@")
        env = dict(os.environ, REDIS_URL=url)
        p = subprocess.run([harness.binary("status"), "--check"], env=env, capture_output=True,
                           timeout=30)
        out = p.stdout.decode() + p.stderr.decode()
        # the cluster has no user "app": AUTH fails, so --check says Redis is not usable
        check("s3cret-pw" not in out, "expected the password never printed", out)
        seeds = ",".join(n.addr for n in c.nodes)
        check("REDIS_URL=redis+cluster://app:***@%s\n" % seeds in out,
              "expected the seeds with the password masked", out)
        eq(p.returncode, 1, "--check exit code with a wrong password")
        p = subprocess.run([harness.binary("status"), "--check"],
                           env=dict(os.environ, REDIS_URL=c.url), capture_output=True, timeout=30)
        eq(p.returncode, 0, "--check exit code on the cluster: " + p.stdout.decode()[-300:]
           + p.stderr.decode()[-300:])


def test_jobs_of_20_queues_spread_over_all_three_masters():
    with _cluster_stack() as (c, s):
        queues = ["spread-%d" % i for i in range(20)]
        w = s.start_worker(queues=queues, concurrency=4)
        jobs = [s.submit(type="echo", queue=q, payload={"q": q}) for q in queues]
        for q, j in zip(queues, jobs):
            done = s.wait_status(j["id"], "done")
            eq(done["result"], {"q": q}, "result of the job of " + q)
        masters = c.masters()
        eq(len(masters), 3, "masters")
        owners = set()
        for j in jobs:
            slot = _slot_of_job(c, j["id"])
            owner = c.master_of_slot(slot)
            owners.add(owner)
            n = int(owner.call("CLUSTER", "COUNTKEYSINSLOT", slot))
            check(n > 0, "expected the keys of %s on %r, the master of slot %d"
                  % (j["queue"], owner, slot), n)
        eq(len(owners), 3, "masters holding the 20 queues")
        sizes = keys_per_master(c)
        check(all(v > 0 for v in sizes.values()), "expected keys on every master", sizes)
        # a few more jobs, a different number per queue: /stats reads every queue in one
        # pipeline over the three masters, and each queue must get its own figures back
        extra = {q: i % 4 for i, q in enumerate(queues)}
        more = [s.submit(type="echo", queue=q, payload={}) for q in queues for _ in range(extra[q])]
        for j in more:
            s.wait_status(j["id"], "done")
        stats = s.request("GET", "/stats").json()
        got = {q["name"]: q["submitted"] for q in stats["queues"] if q["name"] in extra}
        eq(got, {q: 1 + n for q, n in extra.items()}, "jobs submitted per queue in /stats")
        check("level=error" not in w.log(), "expected no error in the worker's log",
              w.log()[-1500:])


def test_a_queue_whose_slot_moved_keeps_working():
    with _cluster_stack() as (c, s):
        q = "moving"
        w = s.start_worker(queues=[q])
        before = _run(s, q, {"n": 1})   # the programs now know the slot's master
        slot = _slot_of_job(c, before["id"])
        src = c.master_of_slot(slot)
        dst = next(m for m in c.masters() if m is not src)
        c.move_slot(slot, dst)
        eq(c.master_of_slot(slot), dst, "master of the slot after the move")
        eq(int(src.call("CLUSTER", "COUNTKEYSINSLOT", slot)), 0, "keys left on the old master")
        src.call("CONFIG", "RESETSTAT")
        # each program's old map sends the next command to the old master: MOVED is followed
        for _ in range(3):   # every thread of status, whichever answers
            eq(s.job(before["id"])["result"], {"n": 1}, "the job read after the move")
        check(_stat(src, "errorstats", "errorstat_MOVED") > 0,
              "expected the old master to have answered MOVED", src.call("INFO", "errorstats"))
        after = _run(s, q, {"n": 2})
        eq(after["result"], {"n": 2}, "a job submitted and run after the move")
        check(int(dst.call("CLUSTER", "COUNTKEYSINSLOT", slot)) > 0,
              "expected the queue's keys on the new master")
        check("level=error" not in w.log(), "expected no error in the worker's log",
              w.log()[-1500:])


def test_a_job_is_read_while_its_slot_is_migrating():
    with _cluster_stack() as (c, s):
        q = "migrating"
        w = s.start_worker(queues=[q])
        job = _run(s, q, {"n": 1})
        slot = _slot_of_job(c, job["id"])
        dst = next(m for m in c.masters() if m is not c.master_of_slot(slot))
        src = c.begin_move(slot, dst)
        c.migrate_keys(slot, src, dst)
        # the slot is still the old master's, its keys are on the new one: the old one answers
        # ASK, the programs ask the new one (after ASKING)
        eq(int(src.call("CLUSTER", "COUNTKEYSINSLOT", slot)), 0, "keys left on the old master")
        eq(c.master_of_slot(slot), src, "master of the slot during the migration")
        dst.call("CONFIG", "RESETSTAT")
        for _ in range(3):
            eq(s.job(job["id"])["result"], {"n": 1}, "the job read during the migration")
        r = s.request("GET", "/jobs/%s/logs" % job["id"])
        eq(r.status, 200, "GET logs during the migration: %r" % r)
        check(_stat(dst, "commandstats", "cmdstat_asking") > 0,
              "expected ASKING sent to the importing master", dst.call("INFO", "commandstats"))
        c.finish_move(slot, src, dst)
        eq(_run(s, q, {"n": 2})["result"], {"n": 2}, "a job run after the migration")
        check("level=error" not in w.log(), "expected no error in the worker's log",
              w.log()[-1500:])


def test_a_script_over_keys_split_by_a_migration_is_503_then_works_once_it_ends():
    with _cluster_stack() as (c, s):
        q = "halfmoved"
        w = s.start_worker(queues=[q])
        job = _run(s, q, {"n": 1})
        cancel = "/jobs/%s/cancel" % job["id"]
        before = s.request("POST", cancel)   # a finished job: the script refuses it
        slot = _slot_of_job(c, job["id"])
        dst = next(m for m in c.masters() if m is not c.master_of_slot(slot))
        src = c.begin_move(slot, dst)
        tag = job["id"].split(".")[0]
        log_key = "jobgate:{%s}:log:%s" % (tag, job["id"])
        eq(src.call("EXISTS", log_key), 1, "the job's log on its master")
        src.call("MIGRATE", "127.0.0.1", dst.port, log_key, 0, 5000)
        src.call("CONFIG", "RESETSTAT")
        # cancel.lua's KEYS (the job hash, its log) are now on two nodes: Redis answers TRYAGAIN
        # until the migration ends; the program waits through it for 5 s (docs/redis.md,
        # "Resharding"), then the client sees 503 unavailable, not an internal error
        r = s.request("POST", cancel)
        eq(r.status, 503, "cancel while the job's keys are split: %r" % r)
        eq(r.header("Retry-After"), "1", "Retry-After")
        check(_stat(src, "errorstats", "errorstat_TRYAGAIN") > 1,
              "expected TRYAGAIN answered (and the call tried again)", src.call("INFO", "errorstats"))
        c.migrate_keys(slot, src, dst)
        c.finish_move(slot, src, dst)
        after = s.request("POST", cancel)
        eq((after.status, after.json()), (before.status, before.json()),
           "cancel once the migration is over")
        check("level=error" not in w.log(), "expected no error in the worker's log",
              w.log()[-1500:])


def test_a_master_killed_is_replaced_by_its_replica_with_no_restart():
    with _cluster_stack() as (c, s):
        q = "failover"
        w = s.start_worker(queues=[q])
        job = _run(s, q, {"n": 1})
        slot = _slot_of_job(c, job["id"])
        master = c.master_of_slot(slot)
        master.call("WAIT", 1, 5000)   # the replica has the job before its master dies
        pids = {p: [x.pid for x in procs] for p, procs in s.procs.items()}
        c.kill(master)
        seen = []
        stop = threading.Event()

        def poll():   # what a client sees during the failover: 200 or 503, nothing else
            while not stop.is_set():
                with contextlib.suppress(AssertionError):
                    _get_ok_or_503(s, "/jobs/" + job["id"], seen)
                time.sleep(0.05)
        t = threading.Thread(target=poll, daemon=True)
        t.start()
        try:
            c.wait_promoted(master)
            harness.wait_until(lambda: _get_ok_or_503(s, "/jobs/" + job["id"], seen), 20,
                               "the job readable again")
        finally:
            stop.set()
            t.join(10)
        bad = [x for x in seen if x not in (200, 503)]
        eq(bad, [], "answers other than 200 and 503 during the failover")
        eq(s.job(job["id"])["result"], {"n": 1}, "the job read from the promoted replica")
        # the same processes (no restart) submit, run and read a new job of that queue
        deadline = time.monotonic() + 20
        while True:
            r = s.request("POST", "/jobs", json={"type": "echo", "queue": q, "payload": {"n": 2}})
            if r.status == 202 or time.monotonic() > deadline:
                break
            eq(r.status, 503, "submit during the failover: %r" % r)
            time.sleep(0.1)
        eq(r.status, 202, "submit after the failover: %r" % r)
        eq(s.wait_status(r.json()["id"], "done")["result"], {"n": 2}, "job run after failover")
        eq({p: [x.pid for x in procs] for p, procs in s.procs.items()}, pids, "program pids")
        check(w.alive(), "expected the worker still running")


def _http(port, method, path, body=None):
    import http.client
    import json
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        h = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, "/api" + path, body=None if body is None else json.dumps(body), headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data[:1] in (b"{", b"[") else data)
    finally:
        c.close()


def test_make_run_with_redis_cluster_3_serves_the_readme_examples_and_stops_everything():
    import shutil
    import signal
    import tempfile
    from cluster import free_cluster_ports, port_in_use
    run_dir = tempfile.mkdtemp(prefix="jg-makerun-cluster-")
    os.chmod(run_dir, 0o755)
    port, base = harness.free_port(), free_cluster_ports(6)
    env = dict(harness._base_env(), PORT=str(port), JOBGATE_RUN_DIR=run_dir, REDIS_CLUSTER="3",
               REDIS_CLUSTER_PORT=str(base),
               JOBGATE_BUILD=os.path.relpath(harness.BUILD, harness.ROOT))
    out_path = os.path.join(run_dir, "stack.out")
    with open(out_path, "wb") as out:
        p = subprocess.Popen(["sh", os.path.join(harness.ROOT, "deploy", "run-stack.sh")],
                             env=env, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             preexec_fn=harness._child_setup)

    def text():
        with open(out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    ports = list(range(base, base + 6))

    def leftovers():   # the stack's processes: the nodes run in run_dir/cluster/<port>
        left = []
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != os.getpid():
                with contextlib.suppress(OSError):
                    with open("/proc/%s/cmdline" % d, "rb") as f:
                        cmd = f.read()
                    if run_dir.encode() in cmd or \
                            os.readlink("/proc/%s/cwd" % d).startswith(run_dir):
                        left.append(int(d))
        return left
    try:
        harness.wait_until(lambda: "jobgate is running" in text() or p.poll() is not None, 60,
                           "run-stack.sh to print its URL")
        check(p.poll() is None, "run-stack.sh is running", text()[-2000:])
        seeds = ",".join("127.0.0.1:%d" % x for x in ports)
        check("REDIS_URL='redis+cluster://%s'" % seeds in text(),
              "expected the cluster's URL printed for a worker of one's own", text()[-1500:])
        nodes = [harness.Redis(host="127.0.0.1", port=x, timeout=5) for x in ports]
        roles = sorted(n.call("ROLE")[0] for n in nodes)
        eq(roles, ["master"] * 3 + ["slave"] * 3, "roles of the cluster's nodes")
        # the README's examples
        st, job = _http(port, "POST", "/jobs", {"type": "echo", "payload": {"hi": 1}})
        eq(st, 202, "POST /jobs")
        harness.wait_until(lambda: _http(port, "GET", "/jobs/" + job["id"])[1]["status"] == "done",
                           30, "the demo worker to run the echo job")
        eq(_http(port, "GET", "/jobs/" + job["id"])[1]["result"], {"hi": 1}, "result")
        st, logs = _http(port, "GET", "/jobs/%s/logs" % job["id"])
        eq(st, 200, "GET logs")
        st, sleeper = _http(port, "POST", "/jobs", {"type": "sleep", "payload": {"ms": 20000}})
        harness.wait_until(lambda: _http(port, "GET", "/jobs/" + sleeper["id"])[1]["status"]
                           == "running", 30, "the sleep job to run")
        eq(_http(port, "POST", "/jobs/%s/cancel" % sleeper["id"])[0], 202, "cancel of a running job")
        harness.wait_until(lambda: _http(port, "GET", "/jobs/" + sleeper["id"])[1]["status"]
                           == "cancelled", 30, "the running job cancelled")
        st, k = _http(port, "POST", "/cache/key", {"type": "echo", "payload": {"x": 1}})
        eq(st, 200, "POST /cache/key")
        eq(_http(port, "PUT", "/cache/%s?ttl=3600" % k["key"], [1, 2])[0], 204, "PUT cache")
        eq(_http(port, "GET", "/cache/" + k["key"]), (200, [1, 2]), "GET cache")
        st, stats = _http(port, "GET", "/stats")
        eq(st, 200, "GET /stats")
        d = next(q for q in stats["queues"] if q["name"] == "default")
        eq((d["done"], d["cancelled"]), (1, 1), "done and cancelled in /stats")
        eq(_http(port, "GET", "/health")[1]["status"], "ok", "health")
        for n in nodes:
            n.close()
        os.killpg(p.pid, signal.SIGINT)
        p.wait(30)
        harness.wait_until(lambda: not any(port_in_use(x) for x in ports), 15,
                           "every cluster node stopped")
        harness.wait_until(lambda: not leftovers(), 5, "every process of the stack to be gone")
        check("run-stack: stopped" in text(), "expected the stack stopped", text()[-1000:])
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(20)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        for pid in leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    logs = ""
    for root, _, files in os.walk(run_dir):
        for f in files:
            if f.endswith(".log"):
                logs += open(os.path.join(root, f), errors="replace").read()
    hits = [x for x in harness.SAN_PATTERNS if x in logs]
    eq(hits, [], "sanitizer reports in make run's logs")
    shutil.rmtree(run_dir, ignore_errors=True)
