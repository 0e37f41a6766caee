"""What the speed work of issue 15 changed, as a user sees it: submit answers with the job object
submit.lua rendered into the job hash, byte for byte what a status read then shows; a new job's hash holds no empty fields; a status read sends no
poll() before its HMGET and instead retries once on a connection the server closed, so a Redis
restart still costs no read a 503."""

import json
import threading

import harness
from harness import check, eq, stack

# HTTP suite: runs behind nginx and again behind Apache (run.py)
FRONTS = harness.FRONTS


def _post_raw(s, body):
    return s.request("POST", "/jobs", body=body, headers={"Content-Type": "application/json"})


def test_submit_answer_is_byte_for_byte_the_status_read_of_the_new_job():
    # submit answers the object submit.lua rendered; a status read copies the one stored in the
    # hash: the two texts must be the same bytes
    s = stack()
    bodies = [{"type": "echo"},
              {"type": "sleep", "queue": "q-1.x_y", "priority": -7, "max_attempts": 9,
               "timeout": 2.5, "payload": {"a": [1, "\u00e9\n\"", None]}},
              {"type": "echo", "delay": 1.5, "priority": 1000},
              {"type": "echo", "cache": True, "cache_ttl": 60, "cache_version": "v\"2",
               "payload": {"n": 1}}]
    for body in bodies:
        r = _post_raw(s, json.dumps(body))
        eq(r.status, 202, "submit of %r" % body)
        jid = r.json()["id"]
        got = s.request("GET", "/jobs/" + jid)
        eq(r.body, got.body, "submit's answer vs GET /jobs/{id} of %r" % body)


def test_a_new_job_stores_no_empty_fields():
    s = stack()
    jid = s.submit(type="echo")["id"]
    h = s.redis("HGETALL", "jobgate:{%s}:job:%s" % (jid[:8], jid))
    fields = dict(zip(h[::2], h[1::2]))
    check(fields.get("id") == jid, "the job hash was found", sorted(fields))
    eq([k for k, v in fields.items() if v == ""], [], "fields stored empty")


@harness.single_redis_only("restarts the one Redis; on a cluster a master is killed instead "
                           "(cluster.a_master_killed_is_replaced_by_its_replica_with_no_restart)")
def test_status_reads_right_after_a_redis_restart_are_answered_not_503():
    with harness.Stack(name="speedrestart", threads=4) as s:
        jid = s.submit(type="echo")["id"]

        def burst(n, out):
            rs = [None] * n

            def one(i):
                rs[i] = s.request("GET", "/jobs/" + jid).status
            ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
            out.extend(rs)
        warm = []
        for _ in range(3):   # every thread of jobgate-status holds a connection now
            burst(12, warm)
        eq(set(warm), {200}, "statuses before the restart")
        s.restart_redis()   # every one of those connections is now closed by the server
        after = []
        burst(12, after)
        # Redis keeps no data across this restart: the job is gone, which is a 404, not a 503
        eq(set(after), {404}, "statuses of reads right after the restart (each on a closed "
                              "connection)")
