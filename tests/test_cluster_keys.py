"""Every script is cluster-clean (issue 16 item 2, docs/redis.md "Scripts and hash slots"): each
redis/*.lua starts with a `#!lua` shebang without `allow-cross-slot-keys`, so a Redis Cluster
node itself refuses any command of the script, on a declared key or one it builds, whose key is
in another slot than the script's first key. These tests run the shipped scripts through the real
programs on a one-node cluster (redis-server --cluster-enabled yes owning all 16384 slots, where
that check is on), show the check is live, and that every script ran there."""

import glob
import hashlib
import os

import harness
import test_render
from harness import check, eq, unique_queue

# HTTP suite: runs behind nginx and again behind Apache (run.py); not in the cluster pass: its
# stacks run on a one-node cluster of their own (OneNodeCluster), which is its point
FRONTS = harness.FRONTS
REDIS = ("single",)

SCRIPTS = sorted(glob.glob(os.path.join(harness.ROOT, "redis", "*.lua")))


class OneNodeCluster(harness.Stack):
    """A stack whose Redis is a cluster of one node that owns every slot: the programs talk to it
    as to one Redis, and Redis applies Cluster's per-script slot check."""

    def start_redis(self):
        self.redis_args = ("--cluster-enabled", "yes",
                           "--cluster-config-file", os.path.join(self.dir, "nodes.conf"))
        super().start_redis()
        self.redis("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        harness.wait_until(lambda: "cluster_state:ok" in self.redis("CLUSTER", "INFO"), 10,
                           "cluster_state:ok")


def _on_cluster(s, *tests):
    """Runs tests (functions that use harness.stack()) with s as the shared stack."""
    saved = harness._shared
    harness._shared = s
    try:
        for t in tests:
            t()
    finally:
        harness._shared = saved


@harness.front_independent
def test_every_script_asks_redis_to_keep_it_in_one_slot():
    eq(len(SCRIPTS) > 0, True, "scripts found in redis/")
    for path in SCRIPTS:
        with open(path, "rb") as f:
            first = f.readline().decode()
        name = os.path.basename(path)
        check(first.startswith("#!lua"), "%s starts with a #!lua shebang (Redis' slot check)" % name,
              first)
        flags = first.split("flags=", 1)[1].split() [0].split(",") if "flags=" in first else []
        for bad in ("allow-cross-slot-keys", "no-cluster"):
            check(bad not in flags, "%s does not carry flag %s" % (name, bad), first)


@harness.front_independent
def test_a_cluster_node_refuses_a_script_that_leaves_its_slot_and_allows_its_own_slot():
    with OneNodeCluster(name="slotcheck", programs=("status",)) as s:
        own = "jobgate:{37a8eec1}:q:default:jobs"
        same = "jobgate:{37a8eec1}:q:default:expiry"   # undeclared, same slot
        other = "jobgate:cache:" + "0" * 64             # another slot
        got = s.redis("EVAL", "#!lua\nredis.call('ZCARD', KEYS[1])\n"
                      "return redis.call('ZCARD', ARGV[1])", 1, own, same)
        eq(got, 0, "an undeclared key of the declared key's slot")
        try:
            got = s.redis("EVAL", "#!lua\nredis.call('ZCARD', KEYS[1])\n"
                          "return redis.call('GET', ARGV[1])", 1, own, other)
        except harness.RedisError as e:
            got = str(e)
        check("same slot" in str(got), "a key of another slot refused", got)
        try:
            got = s.redis("EVAL", "#!lua\nreturn 1", 2, own, other)
        except harness.RedisError as e:
            got = str(e)
        check("CROSSSLOT" in str(got), "declared keys of two slots refused", got)


def test_every_script_runs_within_its_slot_on_a_cluster_node():
    with OneNodeCluster(name="cluster1", env={"JOBGATE_RATE_LIMIT": "1000/60"}) as s:
        # submit (new, delayed, cached, coalesced), claim, log, complete, cancel, retry, list
        _on_cluster(s, test_render.test_every_change_of_a_job_stores_the_one_rendering_that_every_reader_shows,
                    test_render.test_cached_and_coalesced_submits_answer_the_one_rendering)
        q = unique_queue("slots")
        # qstats, pause/resume
        eq(s.request("POST", "/queues/%s/pause" % q).status, 200, "pause")
        r = s.request("POST", "/jobs", json={"type": "t", "queue": q})
        eq(r.status, 202, "submit")
        jid = r.json()["id"]
        r = s.request("GET", "/stats")
        eq(r.status, 200, "stats")
        eq(s.request("POST", "/queues/%s/resume" % q).status, 200, "resume")
        # renew, then the job done and deleted
        w = test_render._Worker(s, q)
        fence = test_render._claim_one(w, jid[:8], jid)
        P = "jobgate:{%s}:" % jid[:8]
        with open(os.path.join(harness.ROOT, "redis", "renew.lua"), "rb") as f:
            renew = s.redis("SCRIPT", "LOAD", f.read())
        got = s.redis("EVALSHA", renew, 2, P + "job:" + jid, P + "q:%s:running" % q, jid, fence,
                      30000)
        eq(got[:2], [1, 0], "renew.lua reply")
        # giveback: a second job claimed, given back (the first kept: the worker runs it)
        r = s.request("POST", "/jobs", json={"type": "t", "queue": q})
        eq(r.status, 202, "submit")
        lost = r.json()["id"]
        test_render._claim_one(w, lost[:8], lost)
        with open(os.path.join(harness.ROOT, "redis", "giveback.lua"), "rb") as f:
            giveback = s.redis("SCRIPT", "LOAD", f.read())
        got = s.redis("EVALSHA", giveback, 1, P + "q:%s:running" % q, P, q, "w-render.1", 10000,
                      P + "events", P + "wake:" + q, jid)
        eq(got, 1, "giveback.lua reply: jobs given back")
        eq((s.job(lost)["status"], s.job(lost)["attempts"]), ("queued", 0), "the job given back")
        eq(w.complete(jid, fence, "done", "1"), [1, "done"], "complete")
        eq(s.request("DELETE", "/jobs/" + jid).status, 204, "delete")
        eq(s.request("GET", "/jobs/" + jid).status, 404, "the deleted job")
        # every shipped script ran on this node (its SHA-1 is loaded: programs load on NOSCRIPT)
        for path in SCRIPTS:
            with open(path, "rb") as f:
                sha = hashlib.sha1(f.read()).hexdigest()
            eq(s.redis("SCRIPT", "EXISTS", sha), [1],
               "%s ran on the cluster node" % os.path.basename(path))
        eq(s.check_alive(), [], "no program died")


@harness.front_independent
def test_over_maxmemory_submit_is_refused_whole_while_workers_listing_stats_cancel_and_delete_work():
    with harness.Stack(name="oom", programs=("submit", "status", "admin")) as s:
        q = unique_queue("oom")
        ids = []
        for _ in range(3):
            r = s.request("POST", "/jobs", json={"type": "t", "queue": q})
            eq(r.status, 202, "submit")
            ids.append(r.json()["id"])
        gone, run, waiting = ids
        eq(s.request("POST", "/jobs/%s/cancel" % gone).status, 200, "cancel of a queued job")
        w = test_render._Worker(s, q)
        s.redis("CONFIG", "SET", "maxmemory-policy", "noeviction")
        s.redis("CONFIG", "SET", "maxmemory", "1")
        try:
            before = s.snapshot()
            r = s.request("POST", "/jobs", json={"type": "t", "queue": q})
            check(r.status >= 500, "submit over maxmemory refused", (r.status, r.body))
            eq(s.snapshot(), before, "Redis after a refused submit")
            r = s.request("GET", "/jobs?queue=%s" % q)
            eq((r.status, sorted(j["id"] for j in r.json()["jobs"])), (200, sorted(ids)),
               "listing (list.lua, no-writes) over maxmemory")
            eq(s.request("GET", "/stats").status, 200,
               "stats (claim.lua allow-oom, qstats.lua no-writes) over maxmemory")
            fence = test_render._claim_one(w, run[:8], run)
            eq(w.complete(run, fence, "done", "1"), [1, "done"], "complete over maxmemory")
            eq(s.request("POST", "/jobs/%s/cancel" % waiting).status, 200,
               "cancel (cancel.lua, allow-oom) over maxmemory")
            eq(s.request("DELETE", "/jobs/" + gone).status, 204,
               "delete (delete.lua, allow-oom) over maxmemory")
        finally:
            s.redis("CONFIG", "SET", "maxmemory", "0")
        eq(s.request("GET", "/jobs/" + gone).status, 404, "the deleted job")
        eq(s.request("GET", "/jobs/" + run).json()["status"], "done", "the job run over maxmemory")
