"""A Redis that answers with replies no Redis sends (shared/replyreader.c): an array declaring
420 million elements, a bulk declaring a terabyte and sending it, a status line that never ends,
nesting deeper than hiredis reads. The programs and the worker must answer 503 (a refused reply is
a lost connection), log why without the reply's bytes, hold their memory, and serve again as soon
as a real Redis answers. The hostile "Redis" is a real TCP server of the test's own at REDIS_URL,
which passes commands to the stack's real redis-server until the test turns it hostile."""

import errno
import select
import socket
import threading

import harness
from harness import check, eq, expect_error
from test_server import serves_again_after_an_outage

CAP = 256 << 20          # bytes of one streamed reply after which the program is still reading
STREAM_CHUNK = b"x" * 65536
CLUSTER_SLOTS = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n"
ONE_REDIS = ("the hostile Redis stands at REDIS_URL in place of one Redis; a cluster node's "
             "connection is opened and read by the same code (jg_redis_open, shared/replyreader.c)")


class FakeRedis:
    """A TCP server standing at REDIS_URL. Passing: each connection is relayed to the real Redis
    (port from upstream()). Hostile (head, stream): every open connection, and each new one, gets
    head at once, then either endless bytes (stream) or head again for every command it sends.
    outcomes: for each hostile connection, (how it ended, bytes sent): "closed" by the program,
    "cap" (still read after CAP bytes), "ended" by the test leaving hostile mode."""

    def __init__(self, upstream, cluster=False):
        self.upstream = upstream
        self.cluster = cluster
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(256)
        self.port = self.lsock.getsockname()[1]
        self.hostile = None
        self.outcomes = []
        self.lock = threading.Lock()
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        if self.cluster:
            return "redis+cluster://127.0.0.1:%d" % self.port
        return "redis://127.0.0.1:%d/0" % self.port

    def _relayed(self, data):
        """As a cluster node: CLUSTER SLOTS (the whole command, as cluster.c and events.c send
        it) is relayed as an EVAL whose answer is a map of every slot to this server, so that
        its answer comes in order with the others'."""
        if self.cluster and data == CLUSTER_SLOTS:
            script = b"return {{0, 16383, {'127.0.0.1', %d, 'fake'}}}" % self.port
            return b"*3\r\n$4\r\nEVAL\r\n$%d\r\n%s\r\n$1\r\n0\r\n" % (len(script), script)
        return data

    def set_hostile(self, head, stream=False):
        with self.lock:
            self.outcomes = []
        self.hostile = (head, stream)

    def set_passing(self):
        self.hostile = None

    def close(self):
        self.closing = True
        self.hostile = None
        self.lsock.close()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        up = None
        try:
            while not self.closing:
                h = self.hostile
                if h is not None:
                    if up:
                        up.close()
                        up = None
                    self._attack(c, h)
                    return
                if up is None:
                    up = socket.create_connection(("127.0.0.1", self.upstream()), timeout=5)
                ready, _, _ = select.select([c, up], [], [], 0.05)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is c:
                        up.sendall(self._relayed(data))
                    else:
                        c.sendall(data)
        except OSError:
            pass
        finally:
            if up:
                up.close()
            c.close()

    def _attack(self, c, h):
        head, stream = h
        sent, how = 0, "ended"
        c.settimeout(0.2)
        try:
            c.sendall(head)
            sent = len(head)
            while self.hostile is h and not self.closing:
                if stream:
                    if sent >= CAP:
                        how = "cap"
                        break
                    try:
                        sent += c.send(STREAM_CHUNK)
                    except socket.timeout:
                        pass   # the program does not read this connection now (an idle thread's)
                    continue
                try:
                    data = c.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    how = "closed"
                    break
                c.sendall(head)
                sent += len(head)
        except OSError as e:
            how = "closed" if e.errno in (errno.EPIPE, errno.ECONNRESET) else "error %s" % e
        finally:
            c.close()
            with self.lock:
                self.outcomes.append((how, sent))


HOSTILE = (
    ("an array declaring 420533333 elements", b"*420533333\r\n", False,
     "array of 420533333 elements over the bound 1000000"),
    ("nesting 9 deep", b"*1\r\n" * 9 + b":1\r\n", False, "depth > 7"),
    ("a bulk declaring a terabyte, sent", b"$1099511627776\r\n", True, "of a bulk still arriving"),
    ("a status line that never ends, sent", b"+", True, "of a line still arriving"),
)


def _hostile_stack(name, programs=("submit", "status"), cluster=False):
    s = harness.Stack(name=name, programs=programs, start=False, threads=2)
    fake = FakeRedis(lambda: s.redis_port, cluster=cluster)
    s.env["REDIS_URL"] = fake.url
    harness.at_cleanup(fake.close)
    try:
        s.start()
    except BaseException:
        s.stop(check=False)
        raise
    return s, fake


@harness.single_redis_only(ONE_REDIS)
def test_a_hostile_redis_reply_is_503_and_the_programs_serve_again_when_redis_is_back():
    s, fake = _hostile_stack("hostile")
    with s:
        job = s.submit(type="echo")
        pids = {p: s.program_pids(p) for p in ("submit", "status")}
        for name, head, stream, why in HOSTILE:
            seen = s.program_log("status").count(why)
            fake.set_hostile(head, stream)
            for m, path, body in (("GET", "/jobs/" + job["id"], None),
                                  ("POST", "/jobs", {"type": "echo"})):
                r = s.request(m, path, json=body, timeout=60)
                expect_error(r, 503, "unavailable")
                eq(r.headers.get("Retry-After"), "1", "Retry-After of %s %s, Redis sending %s"
                   % (m, path, name))
            eq({p: s.program_pids(p) for p in ("submit", "status")}, pids,
               "the programs kept running after %s" % name)
            harness.wait_until(lambda: s.program_log("status").count(why) > seen, 10,
                               "jobgate-status to log the refusal of %s (%r)" % (name, why))
            if stream:
                with fake.lock:
                    outcomes = list(fake.outcomes)
                check(not any(how == "cap" for how, _ in outcomes),
                      "no connection still read after %d MiB of %s" % (CAP >> 20, name), outcomes)
                closed = [n for how, n in outcomes if how == "closed"]
                check(closed, "the programs closed the connections sending %s" % name, outcomes)
                # the bound (JOBGATE_MAX_BODY + 16 MiB + 1 MiB) plus what the sockets buffer
                check(max(closed) < 64 << 20, "each program closed its connection before "
                      "64 MiB of %s had been sent" % name, outcomes)
            fake.set_passing()
            harness.wait_until(lambda: s.request("GET", "/jobs/" + job["id"]).status == 200, 15,
                               "status to answer again once Redis is back (after %s)" % name)
        # every thread, the subscriber's too, serves again (a long poll is woken by a change)
        serves_again_after_an_outage(s, pids, "the hostile replies")
        logs = s.all_logs()
    check("xxxxxxxxxxxxxxxx" not in logs, "no log line holds the reply's bytes",
          [ln for ln in logs.splitlines() if "xxxxxxxx" in ln][:3])


@harness.single_redis_only(ONE_REDIS)
def test_the_worker_survives_hostile_redis_replies_and_runs_jobs_when_redis_is_back():
    s, fake = _hostile_stack("hostilew")
    with s:
        w = s.start_worker(queues=("default",), types=("echo",))
        done = s.submit(type="echo", payload={"n": 1})
        s.wait_status(done["id"], ("done",))
        for name, head, stream, why in HOSTILE:
            seen = w.log().count(why)
            fake.set_hostile(head, stream)
            harness.wait_until(lambda: w.log().count(why) > seen, 15,
                               "the worker to log the refusal of %s (%r)" % (name, why))
            check(w.alive(), "the worker kept running after %s" % name, w.log()[-2000:])
            with fake.lock:
                outcomes = list(fake.outcomes)
            check(not any(how == "cap" for how, _ in outcomes),
                  "no connection still read after %d MiB of %s" % (CAP >> 20, name), outcomes)
            fake.set_passing()
        job = None
        harness.wait_until(lambda: s.request("POST", "/jobs", json={"type": "echo"}).status == 202,
                           15, "submit to work again")
        job = s.submit(type="echo", payload={"after": "hostile"})
        eq(s.wait_status(job["id"], ("done",), timeout=30)["result"], {"after": "hostile"},
           "the worker ran a job once Redis was back")
        check(w.alive(), "the worker is still the same process", w.log()[-2000:])


@harness.single_redis_only(ONE_REDIS)
def test_a_hostile_cluster_node_is_503_and_the_programs_serve_again_when_it_is_sane():
    # REDIS_URL=redis+cluster://: the fake is a cluster whose one node (itself) holds every slot;
    # the programs reach it through cluster.c's node connections
    s, fake = _hostile_stack("hostilec", cluster=True)
    with s:
        job = s.submit(type="echo")
        eq(s.job(job["id"])["id"], job["id"], "a job read through the fake cluster node")
        pids = {p: s.program_pids(p) for p in ("submit", "status")}
        for name, head, stream, why in HOSTILE[::2]:
            seen = s.program_log("status").count(why)
            fake.set_hostile(head, stream)
            expect_error(s.request("GET", "/jobs/" + job["id"], timeout=60), 503, "unavailable")
            expect_error(s.request("POST", "/jobs", json={"type": "echo"}, timeout=60), 503,
                         "unavailable")
            harness.wait_until(lambda: s.program_log("status").count(why) > seen, 10,
                               "jobgate-status to log the refusal of %s (%r)" % (name, why))
            with fake.lock:
                outcomes = list(fake.outcomes)
            check(not any(how == "cap" for how, _ in outcomes),
                  "no connection still read after %d MiB of %s" % (CAP >> 20, name), outcomes)
            fake.set_passing()
            harness.wait_until(lambda: s.request("GET", "/jobs/" + job["id"]).status == 200, 15,
                               "status to answer again once the node is sane (after %s)" % name)
        serves_again_after_an_outage(s, pids, "the hostile cluster node")
