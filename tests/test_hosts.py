"""Several hosts agree (issue 16 item 5). Two "hosts" are network namespaces (tests/netns.py),
each with its own nginx (the shipped config), web programs and worker, joined by a bridge to a
third namespace that runs one Redis Cluster of 3 masters and 3 replicas (tests/cluster.py,
announcing the bridge address). Every client request below goes to one host's nginx from inside
that host's namespace. What a user sees: a job submitted on host A is long-polled and streamed on
host B; a job running on A's worker is cancelled from B and A's worker stops it; both hosts'
admin routes give the same figures. Then everything stops and no namespace or link is left.

The hosts are made once, by the first test that needs them, and taken down by the last test
(or, when that one is not run, at the end of the run, as for any stack)."""

import json
import os
import time

import harness
import netns
from cluster import Cluster
from harness import Bg, check, eq
from test_logs import SSE

PROGRAMS = ("submit", "status", "logs", "admin")
# Host A's worker serves "on-a" and "shared", host B's "on-b" and "shared": a job of "on-a" runs
# on host A whichever host it was submitted on.
QUEUES = {"a": ("on-a", "shared"), "b": ("on-b", "shared")}
TYPES = ("echo", "sleep", "fail")


class Hosts:
    """The network, the cluster in its hub namespace, and one stack + worker per host."""

    def __init__(self):
        self.stacks, self.cluster, self.worker_ids = {}, None, {}
        self.root_links = _links_here()
        self.net = netns.Network(("a", "b"))
        try:
            self.cluster = Cluster(ip=self.net.hub_ip, netns=self.net.hub)
            for h in ("a", "b"):
                s = harness.Stack(programs=PROGRAMS, threads=2, name="host-" + h,
                                  netns=self.net.ns(h), cluster=self.cluster)
                self.stacks[h] = s
                self.worker_ids[h] = "host-%s-%s" % (h, os.urandom(2).hex())
                s.start_worker(queues=QUEUES[h], types=TYPES, concurrency=2, grace=5,
                               args=["--id", self.worker_ids[h]])
        except BaseException:
            self.close(check=False)
            raise

    @property
    def a(self):
        return self.stacks["a"]

    @property
    def b(self):
        return self.stacks["b"]

    def close(self, check=True):
        """Stops both stacks (raising on sanitizer reports or programs that did not stop when
        check), the cluster, then removes the namespaces; returns the namespaces left."""
        try:
            for s in self.stacks.values():
                s.stop(check=check)
        finally:
            if self.cluster:
                self.cluster.stop()
            left = self.net.close()
        return left


_hosts = None


def hosts():
    global _hosts
    if _hosts is None:
        _hosts = Hosts()
    return _hosts


def _links_here():
    """Names of the links of the machine's own network namespace."""
    p = netns._ip("-o", "link", "show", check=False)
    return {ln.split(":")[1].strip().split("@")[0] for ln in p.stdout.decode().splitlines()
            if ln.count(":") >= 2}


def _job_pids(job_id):
    """Pids of the processes whose environment says they run job_id (the job's shell and its
    children), with the inode of each one's network namespace."""
    needle = ("JOBGATE_JOB_ID=%s" % job_id).encode()
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            ns = os.readlink("/proc/%s/ns/net" % d)       # net:[4026532177]
        except OSError:
            continue
        out[int(d)] = int(ns[ns.index("[") + 1:-1])
    return out


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _log_lines(s, job_id, stream):
    r = s.request("GET", "/jobs/%s/logs?limit=1000" % job_id)
    eq(r.status, 200, "GET logs of %s on %s" % (job_id, s.name))
    return [e["line"] for e in r.json()["entries"] if e["stream"] == stream]


def _finished(s, job_id):
    return s.wait_status(job_id, ("done", "failed", "cancelled"), timeout=30)


# ---- the tests ---------------------------------------------------------------------------------

def test_a_job_submitted_on_host_a_is_long_polled_and_streamed_on_host_b():
    h = hosts()
    a, b = h.a, h.b
    eq(a.request("POST", "/queues/on-a/pause").status, 200, "pause on-a on host A")
    try:
        _long_polled_and_streamed_on_b(h, a, b)
    finally:        # the later tests want on-a served, whatever happened here
        a.request("POST", "/queues/on-a/resume")


def _long_polled_and_streamed_on_b(h, a, b):
    job = a.submit(type="sleep", queue="on-a", payload={"ms": 1500, "steps": 3})
    seen = b.job(job["id"])
    eq((seen["status"], seen["version"]), ("queued", job["version"]),
       "host B's view of the job host A just made (status, version)")

    # host B: a log stream and a long poll, both opened while the job waits in its paused queue
    with harness.in_netns(b.netns):
        sse = SSE(b, "/jobs/%s/logs" % job["id"], timeout=60)
    eq(sse.status, 200, "SSE status on host B")
    stream = sse.read_in_background()
    poll = Bg(lambda: b.request("GET", "/jobs/%s?wait=30" % job["id"],
                                headers={"If-None-Match": '"%d"' % seen["version"]}, timeout=60))
    poll.join(0.5)
    check(poll.is_alive(), "the long poll on host B still waits while the job is queued",
          poll.value)

    # resumed from host B: host A's worker takes the job, host B's waiters hear of it
    resumed = time.monotonic()
    eq(b.request("POST", "/queues/on-a/resume").status, 200, "resume on-a on host B")
    r = poll.result()
    eq(r.status, 200, "host B's long poll answer once host A's worker took the job")
    # a wake-up, not the end of wait=30 (the change was published through the cluster)
    check(poll.ended - resumed < 15, "host B's long poll answered at the change, long before "
          "wait=30 ran out (s after the resume)", round(poll.ended - resumed, 2))
    got = r.json()
    check(got["version"] > seen["version"] and got["status"] in ("running", "done"),
          "a newer version, running or done, in the long poll's answer", got)

    events = stream.result()
    logs = [json.loads(d) for e, _, d in events if e == "log"]
    statuses = [json.loads(d)["status"] for e, _, d in events if e == "status"]
    ends = [json.loads(d) for e, _, d in events if e == "end"]
    eq([e["line"] for e in logs if e["stream"] == "stdout"], ["step 1/3", "step 2/3", "step 3/3"],
       "stdout lines streamed on host B")
    eq(statuses[0], "queued", "first status event on host B")
    check("running" in statuses, "a status event `running` on host B", statuses)
    eq(ends, [{"status": "done"}], "end event on host B")
    check(stream.ended - resumed < 15, "host B's stream ended as the 1.5 s job did, not "
          "at a later re-check (s after the resume)", round(stream.ended - resumed, 2))

    done_b, done_a = b.job(job["id"]), a.job(job["id"])
    eq(done_b["worker"], h.worker_ids["a"], "the worker that ran it (host A's)")
    eq(done_b["result"], {"slept_ms": 1500}, "result on host B")
    eq(done_b, done_a, "the finished job as host B and host A give it")


def test_a_job_running_on_host_a_is_cancelled_from_host_b_and_its_process_ends():
    h = hosts()
    a, b = h.a, h.b
    job = a.submit(type="sleep", queue="on-a", payload={"ms": 120000, "steps": 120})
    running = b.wait_status(job["id"], "running")
    eq(running["worker"], h.worker_ids["a"], "the worker running it (host A's)")
    procs = harness.wait_until(lambda: _job_pids(job["id"]), 10, "the job's processes")
    eq(set(procs.values()), {h.net.inode("a")}, "network namespace of the job's processes "
       "(host A's is %d, host B's %d)" % (h.net.inode("a"), h.net.inode("b")))

    r = b.request("POST", "/jobs/%s/cancel" % job["id"])
    eq(r.status, 202, "cancel of the running job on host B")
    eq(r.json()["cancel_requested"], True, "cancel_requested in host B's answer")
    done = b.wait_status(job["id"], "cancelled", timeout=15)
    harness.wait_until(lambda: not any(_alive(p) for p in procs), 5,
                       "the job's processes on host A to be gone")
    eq(a.job(job["id"]), done, "the cancelled job as host A and host B give it")
    eq(_log_lines(b, job["id"], "system")[-1], "cancelled", "last system log entry on host B")


def _figures(s, path):
    r = s.request("GET", path)
    eq(r.status, 200, "GET %s on %s" % (path, s.name))
    return r.json()


def _without_last_seen(stats):
    """/stats minus each worker's last_seen: the time of its latest heartbeat, which may fall
    between the two hosts' reads."""
    out = json.loads(json.dumps(stats))
    for w in out.get("workers", []):
        w.pop("last_seen", None)
    return out


def test_both_hosts_admin_routes_report_the_same_figures():
    h = hosts()
    a, b = h.a, h.b
    jobs = [b.submit(type="echo", queue="on-a", payload={"n": 1}),       # run by A's worker
            a.submit(type="echo", queue="on-b", payload={"n": 2}),       # run by B's worker
            a.submit(type="fail", queue="shared", max_attempts=1, payload={"message": "no"}),
            a.submit(type="echo", queue="shared", cache=True, payload={"n": 3})]
    ends = [_finished(b, j["id"]) for j in jobs]
    eq([j["status"] for j in ends], ["done", "done", "failed", "done"], "statuses of the jobs")
    eq((ends[0]["worker"], ends[1]["worker"]), (h.worker_ids["a"], h.worker_ids["b"]),
       "the workers that ran the jobs of on-a and on-b")
    r = b.request("POST", "/jobs", json={"type": "echo", "queue": "shared", "cache": True,
                                         "payload": {"n": 3}})
    eq((r.status, r.json()["cached"]), (200, True), "the cached result, asked for on host B")

    stats_a = _figures(a, "/stats")
    for path in ("/stats", "/queues", "/jobs?limit=500", "/jobs?queue=on-a&limit=500",
                 "/jobs?status=done&limit=2"):
        fa, fb = _figures(a, path), _figures(b, path)
        if path == "/stats":
            fa, fb = _without_last_seen(fa), _without_last_seen(fb)
        eq(fb, fa, "GET %s: host B's answer (expected: host A's)" % path)

    ids = sorted(w["id"] for w in stats_a["workers"])
    eq(ids, sorted(h.worker_ids.values()), "the live workers both hosts list")
    ra, rb = a.request("GET", "/metrics"), b.request("GET", "/metrics")
    eq((ra.status, rb.status), (200, 200), "GET /metrics on host A and host B")
    check(b"jobgate_jobs_finished_total{" in ra.body, "finished jobs counted in /metrics",
          ra.body[:2000])
    eq(rb.body.decode(), ra.body.decode(), "GET /metrics: host B's text (expected: host A's)")
    listed = {j["id"] for j in _figures(b, "/jobs?limit=500")["jobs"]}
    check({j["id"] for j in jobs} <= listed, "every job of this test in host B's listing",
          sorted(listed))


def test_the_hosts_stop_cleanly_and_leave_no_namespace_or_link_behind():
    global _hosts
    h, _hosts = hosts(), None
    names = [h.net.hub] + [h.net.ns(x) for x in h.net.hosts]
    left = h.close()
    eq(left, [], "namespaces of the test left after it stopped")
    gone = [n for n in names if n in netns.list_namespaces()]
    eq(gone, [], "the test's namespaces still listed by `ip netns`")
    # links of other programs may come and go meanwhile: only those named as the test names its
    # own (h.net.link_names) count
    added = sorted((_links_here() - h.root_links) & set(h.net.link_names))
    eq(added, [], "links of the test's names added to the machine's own namespace")
