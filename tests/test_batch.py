"""Requests that reach jobgate-status together (server.c's batches: a request thread takes every
ready connection of one wake, 16 at most, and the plain reads among them go to Redis in one
pipelined round trip): each gets exactly its own answer, whatever mix of reads, errors, long
polls and submits arrives, and a Redis outage costs them what it costs a lone request.

To make requests arrive together, jobgate-status is stopped (SIGSTOP) while they are sent, then
let go: every connection is then ready on its first wake."""

import signal
import time

import harness
from harness import eq

# HTTP suite: runs behind nginx and again behind Apache, and on the cluster (run.py)
FRONTS = harness.FRONTS


def _while_stopped(s, program, calls):
    """harness.while_stopped of program's process: the calls' requests arrive together."""
    return harness.while_stopped(s.program_pids(program)[0], calls)


def test_reads_and_submits_that_arrive_together_each_get_their_own_answer():
    with harness.Stack(name="batch", threads=1, programs=("status", "submit")) as s:
        # jobs on several queues: on the cluster their keys live on different nodes
        jobs = [s.submit(type="echo", queue="b%d" % (i % 4), payload={"n": i}) for i in range(10)]
        unknown = jobs[0]["id"][:9] + "AAAAAAAAAAAAAAAAAAAAAA"
        # kept-alive connections from the front to jobgate-status: make it hold several
        _while_stopped(s, "status", [lambda j=j: s.request("GET", "/jobs/" + j["id"])
                                     for j in jobs])

        def get(path, headers=None, method="GET"):
            return lambda: s.request(method, path, headers=headers)
        calls = [get("/jobs/" + j["id"]) for j in jobs[:6]]                      # 0-5
        calls += [
            get("/jobs/" + jobs[6]["id"], {"If-None-Match": '"%d"' % jobs[6]["version"]}),  # 6
            get("/jobs/" + jobs[7]["id"], method="HEAD"),                                  # 7
            get("/jobs/" + unknown),                                                       # 8
            get("/jobs/no$such"),                                                          # 9
            get("/jobs/%s?wait=1&version=%d" % (jobs[8]["id"], jobs[8]["version"])),       # 10
            get("/jobs/%s?wait=abc" % jobs[9]["id"]),                                      # 11
            get("/jobs/%s?version=%d" % (jobs[9]["id"], jobs[9]["version"] + 1)),          # 12
            get("/jobs/" + jobs[5]["id"]),                                                 # 13
            lambda: s.request("POST", "/jobs", json={"type": "echo", "queue": "b9",
                                                     "payload": {"new": 1}}),              # 14
            lambda: s.request("POST", "/jobs", body="{not json",
                              headers={"Content-Type": "application/json"}),              # 15
            get("/jobs/" + jobs[0]["id"]),                                                 # 16
        ]
        for round_no in range(2):   # twice: the connections carry requests after a batch
            what = "round %d: " % round_no
            got = _while_stopped(s, "status", calls)
            for i in range(6):
                eq(got[i].status, 200, what + "GET of job %d" % i)
                eq(got[i].json()["id"], jobs[i]["id"], what + "the job answered to GET %d" % i)
                eq(got[i].header("ETag"), '"%d"' % jobs[i]["version"], what + "ETag %d" % i)
            eq(got[6].status, 304, what + "GET with the current ETag in If-None-Match")
            eq(got[7].status, 200, what + "HEAD")
            eq(got[7].body, b"", what + "HEAD body")
            eq(got[7].header("ETag"), '"%d"' % jobs[7]["version"], what + "HEAD ETag")
            eq(got[8].status, 404, what + "unknown job")
            eq(got[8].json()["error"]["code"], "not_found", what + "unknown job's code")
            eq(got[9].status, 404, what + "malformed id")
            eq(got[10].status, 304, what + "long poll of an unchanged job, after its wait")
            eq(got[11].status, 400, what + "bad wait")
            eq(got[11].json()["error"]["code"], "invalid_field", what + "bad wait's code")
            eq(got[12].status, 200, what + "GET with another version=")
            eq(got[12].json()["id"], jobs[9]["id"], what + "the job answered to version=")
            eq(got[13].json()["id"], jobs[5]["id"], what + "second GET of job 5")
            eq(got[14].status, 202, what + "submit")
            new = got[14].json()
            eq(s.request("GET", "/jobs/" + new["id"]).json()["id"], new["id"],
               what + "the submitted job, read back")
            eq(got[15].status, 400, what + "submit of bad JSON")
            eq(got[16].json()["id"], jobs[0]["id"], what + "second GET of job 0")
        eq(s.check_alive(), [], "processes that died")


def _send(conn, method, uri):
    conn.sendall(harness.fcgi_request_bytes(harness.fcgi_params(method, uri), keep_conn=True))


def _together(s, conns, uris):
    """Sends GET uris[i] on conns[i] (kept-alive FastCGI connections) while jobgate-status is
    stopped, lets it go, and returns the answers in order."""
    pid = s.program_pids("status")[0]
    harness.sigstop(pid)
    try:
        for c, uri in zip(conns, uris):
            _send(c, "GET", uri)
        time.sleep(0.2)
    finally:
        harness.os.kill(pid, signal.SIGCONT)
    return [harness.fcgi_read_response(c, "GET " + uri) for c, uri in zip(conns, uris)]


@harness.front_independent
@harness.single_redis_only("stops and restarts the one Redis; the batch's cluster pass is "
                           "test_reads_and_submits_that_arrive_together_each_get_their_own_answer")
def test_reads_that_arrive_together_are_503_while_redis_is_down_and_served_after_it_is_back():
    with harness.Stack(name="batchredis", threads=1, programs=("status", "submit")) as s:
        conns = []
        try:
            jobs = [s.submit(type="echo", payload={"n": i}) for i in range(8)]
            uris = ["/api/jobs/" + j["id"] for j in jobs]
            for i in range(8):
                c = harness.fcgi_connect(s.sock("status"), timeout=20)
                _send(c, "GET", uris[0])
                eq(harness.fcgi_read_response(c).status, 200, "first request on connection %d" % i)
                conns.append(c)
            got = _together(s, conns, uris)
            for i, r in enumerate(got):
                eq(r.json()["id"], jobs[i]["id"], "the job answered to GET %d" % i)
            # a restart between two batches: the kept Redis connection is closed under the
            # program; no request may get a 503 for it
            s.restart_redis()
            for j in jobs:   # the restart lost the data (no persistence): put the jobs back,
                # without their stored object, so each read needs its second HMGET
                s.redis("HSET", "jobgate:{%s}:job:%s" % (j["id"][:8], j["id"]), "id", j["id"],
                        "version", str(j["version"]), "status", "queued")
            got = _together(s, conns, uris)
            for i, r in enumerate(got):
                eq(r.status, 200, "GET %d in the batch after a Redis restart" % i)
                eq(r.json()["id"], jobs[i]["id"], "the job answered to GET %d" % i)
            s.stop_redis()
            got = _together(s, conns, uris)
            for i, r in enumerate(got):
                eq(r.status, 503, "GET %d in a batch while Redis is down" % i)
                eq(r.json()["error"]["code"], "unavailable", "GET %d's error code" % i)
            s.start_redis()
            s.redis("HSET", "jobgate:{%s}:job:%s" % (jobs[3]["id"][:8], jobs[3]["id"]),
                    "id", jobs[3]["id"], "version", "5", "status", "queued")

            def served():
                got = _together(s, conns, uris)
                return [r.status for r in got] == [404, 404, 404, 200, 404, 404, 404, 404]
            harness.wait_until(served, 10, "the batch answered again once Redis is back")
            got = _together(s, conns, uris)
            eq(got[3].json()["id"], jobs[3]["id"], "the job that is back")
            eq(got[3].header("ETag"), '"5"', "its ETag")
        finally:
            for c in conns:
                c.close()
        eq(s.check_alive(), [], "processes that died")


@harness.front_independent
def test_a_request_not_all_there_does_not_hold_up_the_others_that_arrived_with_it():
    with harness.Stack(name="batchslow", threads=1, programs=("status", "submit")) as s:
        conns = []
        try:
            jobs = [s.submit(type="echo", payload={"n": i}) for i in range(4)]
            uris = ["/api/jobs/" + j["id"] for j in jobs]
            for i in range(4):
                c = harness.fcgi_connect(s.sock("status"), timeout=20)
                _send(c, "GET", uris[0])
                eq(harness.fcgi_read_response(c).status, 200, "first request on connection %d" % i)
                conns.append(c)
            slow = harness.fcgi_request_bytes(harness.fcgi_params("GET", uris[1]), keep_conn=True)
            pid = s.program_pids("status")[0]
            harness.sigstop(pid)
            try:
                _send(conns[0], "GET", uris[0])
                conns[1].sendall(slow[:len(slow) // 2])   # the rest comes later
                _send(conns[2], "GET", uris[2])
                _send(conns[3], "GET", uris[3])
                time.sleep(0.2)
            finally:
                harness.os.kill(pid, signal.SIGCONT)
            for i in (0, 2, 3):
                # well within the program's 10 s --read-timeout of the unfinished request
                conns[i].settimeout(5)
                r = harness.fcgi_read_response(conns[i], "GET %d while request 1 is unfinished"
                                               % i)
                eq(r.status, 200, "GET %d, answered while request 1 is unfinished" % i)
                eq(r.json()["id"], jobs[i]["id"], "the job answered to GET %d" % i)
            conns[1].sendall(slow[len(slow) // 2:])
            r = harness.fcgi_read_response(conns[1], "the finished request 1")
            eq(r.status, 200, "GET 1 once all there")
            eq(r.json()["id"], jobs[1]["id"], "the job answered to GET 1")
        finally:
            for c in conns:
                c.close()
        eq(s.check_alive(), [], "processes that died")
