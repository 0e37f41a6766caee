"""Events on a Redis Cluster (issue 16 item 3): job changes, log lines, wake-ups and cancels go
on per-queue shard channels (SPUBLISH in the queue's slot). A status or logs process subscribes
(SSUBSCRIBE) to a queue's events channel on the master of that queue's slot, and only while it
holds a long poll or stream of a job of that queue; when the slot moves, it subscribes again at
the new master, with no restart. Real 3 masters + 3 replicas (tests/cluster.py), real programs
behind nginx, a real worker."""

import hashlib
import time

import harness
from harness import Bg, check, eq
from test_cluster import _cluster_stack
from test_logs import SSE


def _tag(queue):
    return hashlib.sha256(queue.encode()).hexdigest()[:8]


def _events(tag):
    return "jobgate:{%s}:events" % tag


def _queues_on_each_master(c, prefix, n=3):
    """n queue names whose slots are on n different masters: {queue: master}."""
    got, used = {}, set()
    for i in range(200):
        q = "%s-%d" % (prefix, i)
        m = c.master_of_key("{%s}" % _tag(q))
        if m.port not in used:
            got[q] = m
            used.add(m.port)
        if len(got) == n:
            return got
    raise AssertionError("no %d queues on different masters" % n)


def _events_channels(node):
    """The events channels someone is subscribed to on node (PUBSUB SHARDCHANNELS)."""
    return sorted(ch for ch in node.call("PUBSUB", "SHARDCHANNELS") if ch.endswith(":events"))


def _long_poll(s, job, wait=30):
    return Bg(lambda: s.request("GET", "/jobs/%s?wait=%d&version=%d"
                                % (job["id"], wait, job["version"]), timeout=wait + 30))


def test_long_polls_and_streams_of_queues_on_different_masters_are_woken():
    with _cluster_stack() as (c, s):
        queues = _queues_on_each_master(c, "evq")
        for q in queues:
            eq(s.request("POST", "/queues/%s/pause" % q).status, 200, "pause " + q)
        s.start_worker(queues=list(queues))
        jobs = {q: s.submit(type="sleep", queue=q, payload={"ms": 300, "steps": 2})
                for q in queues}
        polls = {q: _long_poll(s, j) for q, j in jobs.items()}
        streams = {}
        for q, j in jobs.items():
            sse = SSE(s, "/jobs/%s/logs" % j["id"], timeout=60)
            eq(sse.status, 200, "SSE status of the job of " + q)
            streams[q] = sse.read_in_background()
        time.sleep(1)
        for q, p in polls.items():
            check(p.is_alive(), "the long poll of the queued job of %s still waits" % q, p.value)
        # each wait subscribed its queue's events channel on that queue's master
        for q, m in queues.items():
            check(_events(_tag(q)) in _events_channels(m),
                  "expected %s subscribed on %r, the master of its slot" % (_events(_tag(q)), m),
                  _events_channels(m))
        for q in queues:
            eq(s.request("POST", "/queues/%s/resume" % q).status, 200, "resume " + q)
        for q, p in polls.items():
            r = p.result(40)
            eq(r.status, 200, "the long poll of the job of %s, woken by its change" % q)
            check(r.json()["status"] in ("running", "done"),
                  "expected the job of %s running or done in the long poll's answer" % q, r.json())
        for q, st in streams.items():
            events = st.result(40)
            kinds = [e[0] for e in events]
            check("end" in kinds, "expected the SSE stream of the job of %s to end with the job"
                  % q, events[-5:])
            check(len(events) >= 3, "expected log events in the stream of the job of %s" % q,
                  events)


def test_a_process_subscribes_only_to_the_queues_of_its_waiters_on_their_master():
    with _cluster_stack() as (c, s):
        queues = _queues_on_each_master(c, "only")
        waited, other = list(queues)[:2]
        m = queues[waited]
        job = s.submit(type="echo", queue=waited, delay=3600)
        poll = _long_poll(s, job, wait=20)
        harness.wait_until(lambda: _events(_tag(waited)) in _events_channels(m), 10,
                           "the waited queue's events channel subscribed on its master")
        for n in c.live():
            want = [_events(_tag(waited))] if n is m else []
            eq(_events_channels(n), want, "events channels subscribed on %r (%s)"
               % (n, "the waited queue's master" if n is m else "another node"))
        eq(m.call("PUBSUB", "SHARDNUMSUB", _events(_tag(waited))), [_events(_tag(waited)), 1],
           "subscribers of the waited queue's channel on its master (one status process)")
        # jobs of another queue change meanwhile: nobody is subscribed to its channel on any
        # node, so no process receives its messages, and the waiter is not answered
        s.start_worker(queues=[other])
        done = s.wait_status(s.submit(type="echo", queue=other)["id"], "done")
        eq(done["status"], "done", "a job of the other queue ran")
        for n in c.live():
            eq(n.call("PUBSUB", "SHARDNUMSUB", _events(_tag(other)))[1], 0,
               "subscribers of the other queue's events channel on %r" % n)
        check(poll.is_alive(), "the long poll of the waited queue still waits", poll.value)
        # the waited job changes: the long poll is answered
        eq(s.request("POST", "/jobs/%s/cancel" % job["id"]).status, 200, "cancel the queued job")
        r = poll.result(30)
        eq((r.status, r.json()["status"]), (200, "cancelled"), "the long poll's answer")


def test_waiters_are_woken_after_their_queues_slot_moved_to_another_master():
    with _cluster_stack() as (c, s):
        q = "evmove"
        job = s.submit(type="sleep", queue=q, payload={"ms": 200, "steps": 2}, delay=3600)
        slot = c.slot_of("{%s}" % _tag(q))
        src = c.master_of_slot(slot)
        poll = _long_poll(s, job, wait=40)
        sse = SSE(s, "/jobs/%s/logs" % job["id"], timeout=60)
        eq(sse.status, 200, "SSE status")
        stream = sse.read_in_background()
        harness.wait_until(lambda: m_subs(src) == 2, 10,
                           "the status and logs processes subscribed on the slot's master")
        dst = next(m for m in c.masters() if m is not src)
        c.move_slot(slot, dst)
        eq(c.master_of_slot(slot), dst, "the slot's master after the move")
        # Redis told the subscribers (sunsubscribe); both subscribe again at the new master
        harness.wait_until(lambda: m_subs(dst) == 2 and m_subs(src) == 0, 15,
                           "both processes subscribed again on the new master, none on the old")
        check(poll.is_alive(), "the long poll still waits after the move", poll.value)
        # the job changes (cancelled while it waits): both waiters hear of it
        eq(s.request("POST", "/jobs/%s/cancel" % job["id"]).status, 200, "cancel the queued job")
        r = poll.result(40)
        eq((r.status, r.json()["status"]), (200, "cancelled"),
           "the long poll, woken after the slot moved, with no restart")
        events = stream.result(40)
        check(any(e[0] == "end" for e in events), "expected the SSE stream to end with the job",
              events[-5:])


def m_subs(node, q="evmove"):
    return node.call("PUBSUB", "SHARDNUMSUB", _events(_tag(q)))[1]


def test_cancel_reaches_the_worker_running_the_job_on_a_cluster():
    with _cluster_stack() as (c, s):
        q = "evcancel"
        w = s.start_worker(queues=[q])
        job = s.submit(type="sleep", queue=q, payload={"ms": 30000, "steps": 1})
        s.wait_status(job["id"], "running")
        master = c.master_of_key("{%s}" % _tag(q))
        chans = master.call("PUBSUB", "SHARDCHANNELS", "jobgate:{%s}:worker:*" % _tag(q))
        eq(len(chans), 1, "the worker's cancel channel of the queue, on the queue's master")
        r = s.request("POST", "/jobs/%s/cancel" % job["id"])
        eq(r.status, 202, "cancel of the running job")
        done = s.wait_status(job["id"], "cancelled", timeout=15)
        eq(done["status"], "cancelled", "the job after the cancel")
        check("cancel requested: stopping job" in w.log(),
              "expected the worker to log the cancel it received", w.log()[-1500:])


def test_waiters_are_woken_after_their_queues_master_died_and_its_replica_took_over():
    with _cluster_stack() as (c, s):
        q = "evfail"
        job = s.submit(type="echo", queue=q, delay=3600)
        dead = c.master_of_key("{%s}" % _tag(q))
        poll = _long_poll(s, job, wait=50)
        harness.wait_until(lambda: m_subs(dead, q) == 1, 10,
                           "the status process subscribed on the queue's master")
        dead.call("WAIT", 1, 5000)   # the replica has the job before its master dies
        c.kill(dead)
        c.wait_promoted(dead)
        new = c.master_of_key("{%s}" % _tag(q))
        check(new is not dead, "expected another master for the queue's slot", new)
        harness.wait_until(lambda: m_subs(new, q) == 1, 20,
                           "the status process subscribed again on the promoted replica")
        check(poll.is_alive(), "the long poll still waits after the failover", poll.value)
        r = harness.wait_until(lambda: _cancel_or_none(s, job), 20, "cancel after the failover")
        eq(r.status, 200, "cancel of the queued job on the new master")
        r = poll.result(40)
        eq((r.status, r.json()["status"]), (200, "cancelled"),
           "the long poll, woken after the failover, with no restart")


def _cancel_or_none(s, job):
    r = s.request("POST", "/jobs/%s/cancel" % job["id"])
    return None if r.status == 503 else r
