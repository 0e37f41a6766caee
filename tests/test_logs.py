"""jobgate-logs (contract section 5, issue 5): a job's log as Server-Sent Events and as long-polled
pages, through the shipped nginx config, with real workers writing the lines."""

import http.client
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse

import harness
from harness import check, eq, expect_error, stack, unique_queue

# HTTP suite: runs behind nginx and again behind Apache (run.py)
FRONTS = harness.FRONTS

ELLIPSIS = "\u2026"


# ---- helpers -----------------------------------------------------------------------------------

class SSE:
    """One Server-Sent Events response read as it comes, through nginx."""

    def __init__(self, s, path, headers=None, timeout=30):
        u = urllib.parse.urlsplit(s.base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        h = {"Accept": "text/event-stream"}
        h.update(headers or {})
        self.conn.request("GET", u.path + path, headers=h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.first_line = None
        self.comments = []

    def events(self):
        """Yields (event, id, data) until the response ends."""
        event, eid, data = None, None, []
        while True:
            raw = self.resp.readline()
            if not raw:
                return
            line = raw.decode("utf-8").rstrip("\n")
            if self.first_line is None:
                self.first_line = line
            if line == "":
                if event or data:
                    yield event, eid, "\n".join(data)
                event, eid, data = None, None, []
            elif line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                eid = line[4:]
            elif line.startswith("data: "):
                data.append(line[6:])

    def close(self):
        self.conn.close()

    def read_in_background(self):
        """Reads every event until the response ends, in a thread, then closes: a harness.Bg
        whose result() is the list of (event, id, data)."""
        def read_all():
            events = list(self.events())
            self.close()
            return events
        return harness.Bg(read_all)


def read_stream(s, path, headers=None, timeout=60):
    """The whole stream: (log entries [(id, entry)], status events, end event, SSE)."""
    sse = SSE(s, path, headers, timeout=timeout)
    eq(sse.status, 200, "SSE status of %s" % path)
    logs, statuses, end = [], [], None
    for event, eid, data in sse.events():
        if event == "log":
            logs.append((eid, json.loads(data)))
        elif event == "status":
            statuses.append(json.loads(data))
        elif event == "end":
            end = json.loads(data)
    sse.close()
    return logs, statuses, end, sse


def submit(s, body):
    r = s.request("POST", "/jobs", json=body)
    eq(r.status, 202, "submit %r" % (body,))
    return r.json()["id"]


def wait_done(s, job_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = s.request("GET", "/jobs/%s?wait=5" % job_id,
                      headers={"If-None-Match": '"%s"' % s.request("GET", "/jobs/" + job_id).json()["version"]})
        if r.status == 200 and r.json()["status"] in ("done", "failed", "cancelled"):
            return r.json()
    raise AssertionError("job %s did not finish in %s s" % (job_id, timeout))


def lines_job(s, count, q=None):
    """Submits a `lines` job of count lines on a fresh queue served by its own worker."""
    q = q or unique_queue("lines")
    s.start_worker(queues=[q], types=["lines"])
    return submit(s, {"type": "lines", "queue": q, "payload": {"count": count}}), q


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


# ---- SSE ---------------------------------------------------------------------------------------

def test_sse_delivers_all_2000_lines_in_order_then_end():
    s = stack()
    job, _ = lines_job(s, 2000)
    logs, statuses, end, sse = read_stream(s, "/jobs/%s/logs" % job)
    eq(sse.headers.get("content-type"), "text/event-stream", "SSE content type")
    eq(sse.headers.get("cache-control"), "no-cache", "SSE cache control")
    eq(sse.headers.get("x-accel-buffering"), "no", "X-Accel-Buffering")
    eq(sse.headers.get("x-content-type-options"), "nosniff", "nosniff on SSE")
    eq(sse.first_line, "retry: 2000", "first line of the stream")
    out = [e["line"] for _, e in logs if e["stream"] == "stdout"]
    eq(out, ["line %d" % i for i in range(1, 2001)], "stdout lines in order")
    ids = [i for i, _ in logs]
    eq(len(set(ids)), len(ids), "cursors are unique")
    check(all(a < b for a, b in zip([tuple(map(int, i.split("-"))) for i in ids],
                                    [tuple(map(int, i.split("-"))) for i in ids[1:]])),
          "cursors grow with each entry")
    check(statuses and statuses[0]["status"] in ("queued", "running", "done"),
          "a status event at the start", statuses[:1])
    eq(statuses[-1]["status"], "done", "last status event")
    eq(end, {"status": "done"}, "end event")
    systems = [e["line"] for _, e in logs if e["stream"] == "system"]
    check(systems[0] == "queued" and systems[-1] == "done", "system entries record the life",
          systems)


def test_sse_resume_with_last_event_id_gives_exactly_the_rest():
    s = stack()
    job, _ = lines_job(s, 300)
    wait_done(s, job)
    logs, _, _, _ = read_stream(s, "/jobs/%s/logs" % job)
    cut = logs[100][0]
    rest, _, end, _ = read_stream(s, "/jobs/%s/logs" % job, headers={"Last-Event-ID": cut})
    eq([i for i, _ in rest], [i for i, _ in logs[101:]], "entries after Last-Event-ID")
    eq(end, {"status": "done"}, "end after the rest")
    rest2, _, _, _ = read_stream(s, "/jobs/%s/logs?stream=1&after=%s" % (job, cut))
    eq([i for i, _ in rest2], [i for i, _ in logs[101:]], "entries after ?after= with ?stream=1")


def test_sse_opened_before_the_job_runs_sees_lines_live():
    s = stack()
    q = unique_queue("live")
    job = submit(s, {"type": "sleep", "queue": q, "payload": {"ms": 1200, "steps": 4}})
    sse = SSE(s, "/jobs/%s/logs" % job)
    eq(sse.status, 200, "stream of a queued job")
    got, statuses, times = [], [], []
    t0 = None
    events = sse.events()
    event, _, data = next(events)   # the status at the start: still queued, no worker yet
    eq((event, json.loads(data)["status"]), ("status", "queued"), "first event")
    s.start_worker(queues=[q], types=["sleep"])
    for event, _, data in events:
        if event == "log":
            e = json.loads(data)
            got.append(e["line"])
            if e["line"].startswith("step"):
                times.append(time.time())
        elif event == "status":
            statuses.append(json.loads(data))
        elif event == "end":
            break
    sse.close()
    eq([l for l in got if l.startswith("step")], ["step %d/4" % i for i in range(1, 5)],
       "the job's lines")
    check(times[-1] - times[0] > 0.6, "lines arrived while the job ran, not all at the end",
          times)
    check(any(st["progress"] == 50 for st in statuses), "progress changes are status events",
          statuses)


def test_a_queued_jobs_log_shows_queued_under_the_cursor_it_keeps_once_the_job_runs():
    # a job queued at once has no log stream until it is claimed or cancelled (docs/redis.md,
    # "The job's log"): jobgate-logs shows its `queued` entry meanwhile, with the cursor the
    # entry gets when the log is made; a reader that took that cursor misses nothing and sees
    # nothing twice
    s = stack()
    q = unique_queue("lazy")
    job = submit(s, {"type": "sleep", "queue": q, "payload": {"ms": 300, "steps": 2}})
    created = s.request("GET", "/jobs/" + job).json()["created_at"]
    page = s.request("GET", "/jobs/%s/logs" % job).json()
    eq([(e["stream"], e["line"], e["ts"]) for e in page["entries"]], [("system", "queued", created)],
       "the log of a queued job")
    first = page["entries"][0]["id"]
    eq(page["next"], first, "the page's next cursor")
    eq(s.request("GET", "/jobs/%s/logs?after=%s" % (job, first)).json()["entries"], [],
       "entries after the queued entry, before the job runs")
    sse = SSE(s, "/jobs/%s/logs" % job)
    events = sse.events()
    seen = []
    for event, eid, data in events:   # the status at the start, then the queued entry
        seen.append((event, eid))
        if event == "log":
            eq((eid, json.loads(data)["line"]), (first, "queued"), "the stream's first entry")
            break
    s.start_worker(queues=[q], types=["sleep"])
    live = [eid for event, eid, _ in events if event == "log"]   # until its end event
    sse.close()
    eq(s.request("GET", "/jobs/" + job).json()["status"], "done", "the job after its stream ended")
    whole = s.request("GET", "/jobs/%s/logs" % job).json()["entries"]
    eq(whole[0]["id"], first, "the queued entry's cursor once the log is made")
    eq([e["line"] for e in whole].count("queued"), 1, "queued entries in the finished log")
    check(whole[1]["line"].startswith("attempt 1 started"), "expected the attempt after queued",
          whole[1])
    eq(live, [e["id"] for e in whole[1:]], "what the live stream got after the queued entry")
    rest, _, end, _ = read_stream(s, "/jobs/%s/logs" % job, headers={"Last-Event-ID": first})
    eq([i for i, _ in rest], [e["id"] for e in whole[1:]], "a stream resumed after queued")
    eq(end, {"status": "done"}, "its end")


def test_a_job_cancelled_while_queued_has_queued_then_cancelled_in_its_log():
    s = stack()
    q = unique_queue("lazycancel")
    job = submit(s, {"type": "sleep", "queue": q})
    first = s.request("GET", "/jobs/%s/logs" % job).json()["entries"][0]["id"]
    eq(s.request("POST", "/jobs/%s/cancel" % job).status, 200, "cancel of the queued job")
    log = s.request("GET", "/jobs/%s/logs" % job).json()
    eq([(e["id"] == first, e["line"]) for e in log["entries"]],
       [(True, "queued"), (False, "cancelled")], "the log: queued (same cursor), cancelled")
    eq(log["done"], True, "the page says the job is done")


def test_a_live_stream_whose_reader_pauses_still_gets_every_line_in_order():
    # Streams caught up before the job prints get each line as it comes; one whose client
    # stops reading for a while (a small receive buffer, so the bytes back up through the front
    # into jobgate-logs' socket) must get the rest of a line the socket took only in part, then
    # every later one, in order, as the readers that kept up do.
    s = stack()
    q = unique_queue("pause")
    script = os.path.join(s.dir, "long_lines.py")
    with open(script, "w") as f:
        f.write('import sys\nfor i in range(400):\n    sys.stdout.write("%d %s\\n" % (i, "x" * 12000))\n')
    job = submit(s, {"type": "longlines", "queue": q})
    u = urllib.parse.urlsplit(s.base)
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(60)
    slow.connect((u.hostname, u.port))
    slow.sendall(("GET %s/jobs/%s/logs HTTP/1.0\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n"
                  % (u.path, job)).encode())
    head = b""
    while b"event: status" not in head:   # parked, caught up: the job has not run yet
        chunk = slow.recv(4096)
        check(chunk, "the paused stream's start", head)
        head += chunk
    result = {}
    keeper = threading.Thread(target=lambda: result.update(
        logs=read_stream(s, "/jobs/%s/logs" % job, timeout=120)[0]))
    keeper.start()
    time.sleep(0.5)
    s.start_worker(queues=[q], types={"longlines": "exec python3 " + script})
    time.sleep(3)   # the job prints 4.8 MB meanwhile; this reader takes nothing
    rest = [head]
    while True:
        chunk = slow.recv(65536)
        if not chunk:
            break
        rest.append(chunk)
    slow.close()
    keeper.join(120)
    want = ["%d %s" % (i, "x" * 12000) for i in range(400)]
    body = b"".join(rest).decode()
    got = [json.loads(line[6:])["line"] for line in body.split("\n")
           if line.startswith("data: ") and '"stream":"stdout"' in line]
    eq(len(got), len(want), "lines the paused reader got")
    check(got == want, "the paused reader's lines, whole and in order",
          [g[:20] for g, w in zip(got, want) if g != w][:3])
    check("event: end" in body, "the paused reader's stream ends", body[-200:])
    kept = [e["line"] for _, e in result.get("logs", []) if e["stream"] == "stdout"]
    check(kept == want, "the reader that kept up got every line in order",
          "%d lines, first differing: %r" % (len(kept), next(
              (k[:20] for k, w in zip(kept, want) if k != w), None)))


def test_several_viewers_of_one_job_each_see_everything():
    s = stack()
    q = unique_queue("many")
    job = submit(s, {"type": "lines", "queue": q, "payload": {"count": 500}})
    results = [None] * 5

    def view(i):
        results[i] = read_stream(s, "/jobs/%s/logs" % job)[0]

    threads = [threading.Thread(target=view, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    s.start_worker(queues=[q], types=["lines"])
    for t in threads:
        t.join(60)
    for i, logs in enumerate(results):
        check(logs is not None, "viewer %d finished" % i)
        eq([e["line"] for _, e in logs if e["stream"] == "stdout"],
           ["line %d" % n for n in range(1, 501)], "viewer %d's lines" % i)


def test_streams_of_one_job_at_different_cursors_each_get_exactly_their_rest():
    # A live line is rendered once for the caught-up streams at the same cursor and copied;
    # a stream that resumed elsewhere must still get exactly the entries after its own cursor.
    s = stack()
    q = unique_queue("cursors")
    job = submit(s, {"type": "sleep", "queue": q, "payload": {"ms": 3000, "steps": 30}})
    s.start_worker(queues=[q], types=["sleep"])
    first = SSE(s, "/jobs/%s/logs" % job)
    eq(first.status, 200, "the first stream's status")
    seen = []   # (cursor, entry) of the first stream, until it has 5 steps
    events = first.events()
    for event, eid, data in events:
        if event == "log":
            seen.append((eid, json.loads(data)))
            if sum(1 for _, e in seen if e["stream"] == "stdout") == 5:
                break
    after = seen[2][0]
    results = {}

    def view(name, headers):
        results[name] = read_stream(s, "/jobs/%s/logs" % job, headers)[0]

    threads = [threading.Thread(target=view, args=("all", None)),
               threading.Thread(target=view, args=("resumed", {"Last-Event-ID": after}))]
    for t in threads:
        t.start()
    rest = [(eid, json.loads(data)) for event, eid, data in events if event == "log"]
    first.close()
    for t in threads:
        t.join(60)
    everything = seen + rest
    eq([e["line"] for _, e in everything if e["stream"] == "stdout"],
       ["step %d/30" % i for i in range(1, 31)], "the first stream's steps, read live")
    eq([c for c, _ in results.get("all") or []], [c for c, _ in everything],
       "a second stream from the start: every cursor, in order")
    eq([c for c, _ in results.get("resumed") or []], [c for c, _ in everything[3:]],
       "a stream resumed after the third entry: exactly the entries after it")
    eq(results["resumed"], everything[3:], "the resumed stream's entries, byte for byte")


def test_a_client_that_disconnects_is_freed():
    if harness.FRONT == "apache":
        # Apache notices a client that left only when it next writes to it (the next
        # keepalive), then closes the FastCGI connection: freed within a heartbeat or two, so
        # a 1 s heartbeat here. nginx notices at once (README: what differs between the fronts).
        with harness.Stack(env={"JOBGATE_SSE_HEARTBEAT": "1"}, programs=("submit", "logs"),
                           name="gone") as s:
            _disconnected_streams_are_freed(s)
    else:
        _disconnected_streams_are_freed(stack())


def _disconnected_streams_are_freed(s):
    q = unique_queue("gone")   # no worker: the streams stay open
    job = submit(s, {"type": "sleep", "queue": q, "payload": {"ms": 10}})
    pid = s.program_pids("logs")[0]
    before = open_fds(pid)
    # Rounds of 20 streams whose clients leave. nginx closes the FastCGI connection of each
    # (it cannot reuse one mid-answer); a process that kept them would hold 100 more fds.
    for _ in range(5):
        streams = [SSE(s, "/jobs/%s/logs" % job) for _ in range(20)]
        for st in streams:
            eq(st.status, 200, "stream status")
            next(st.events())
        check(open_fds(pid) >= 20, "20 parked streams hold their connections", open_fds(pid))
        for st in streams:
            st.close()
        harness.wait_until(lambda: open_fds(pid) <= before + 25, 5,
                           "the logs process frees the streams of clients that left")


def test_sse_keepalive_comment_arrives():
    with harness.Stack(env={"JOBGATE_SSE_HEARTBEAT": "1"}, programs=("submit", "logs"),
                       name="keepalive") as s:
        job = submit(s, {"type": "sleep", "queue": unique_queue("hb"), "payload": {"ms": 10}})
        sse = SSE(s, "/jobs/%s/logs" % job, timeout=10)
        eq(sse.status, 200, "stream status")
        lines = []
        t0 = time.time()
        while sum(1 for l in lines if l == ": keepalive") < 2 and time.time() - t0 < 8:
            lines.append(sse.resp.readline().decode().rstrip("\n"))
        sse.close()
        eq(sum(1 for l in lines if l == ": keepalive"), 2, "keepalive comments in 8 s")
        check(time.time() - t0 < 4, "two keepalives within about two heartbeats",
              time.time() - t0)


# ---- polling -----------------------------------------------------------------------------------

def test_polling_pages_through_the_same_entries():
    s = stack()
    job, _ = lines_job(s, 250)
    wait_done(s, job)
    logs, _, _, _ = read_stream(s, "/jobs/%s/logs" % job)
    got, after, pages = [], None, 0
    while True:
        path = "/jobs/%s/logs?limit=100" % job + ("&after=" + after if after else "")
        r = s.request("GET", path)
        eq(r.status, 200, "poll status")
        eq(r.header("content-type"), "application/json", "poll content type")
        eq(r.header("cache-control"), "no-store", "poll cache control")
        b = r.json()
        eq(sorted(b), ["done", "entries", "next", "status"], "poll members")
        got += b["entries"]
        pages += 1
        after = b["next"]
        if b["done"]:
            break
        check(pages < 10, "paging ends")
    eq([e["id"] for e in got], [i for i, _ in logs], "polled ids equal the stream's")
    eq(after, logs[-1][0], "next is the last entry once done")
    eq(b["status"], "done", "status in the last page")
    check(all(set(e) == {"id", "ts", "stream", "line"} for e in got), "entry members", got[0])
    check(got[0]["ts"].endswith("Z") and len(got[0]["ts"]) == 24, "RFC 3339 ms UTC", got[0]["ts"])


def test_a_log_of_many_stream_nodes_reads_back_whole_in_order_paged_and_resumed():
    """A job's log is a Redis stream, which Redis keeps in nodes; the Redis that jobgate starts
    (and recommends: README, "Redis") makes a node at most 512 bytes (stream-node-max-bytes), so
    the log of a 1,500-line job spans about 120 nodes. A whole stream, pages of any size and
    reads after any cursor (inside a node, across a node's end) give every entry once, in order."""
    s = stack()
    job, _ = lines_job(s, 1500)
    wait_done(s, job)
    info = s.redis("XINFO", "STREAM", "jobgate:{%s}:log:%s" % (job[:8], job))
    info = dict(zip(info[::2], info[1::2]))
    # Redis' default (4,096-byte nodes) would hold this log in 16
    check(info["radix-tree-keys"] >= 50, "the log spans at least 50 stream nodes",
          info["radix-tree-keys"])
    logs, _, end, _ = read_stream(s, "/jobs/%s/logs" % job)
    ids = [i for i, _ in logs]
    eq(len(ids), info["length"], "entries streamed (the log's length)")
    eq([e["line"] for _, e in logs if e["stream"] == "stdout"],
       ["line %d" % i for i in range(1, 1501)], "stdout lines streamed, in order")
    eq(end, {"status": "done"}, "end event")
    for limit in (7, 100, 1000):
        got, after = [], None
        while True:
            r = s.request("GET", "/jobs/%s/logs?limit=%d" % (job, limit)
                          + ("&after=" + after if after else ""))
            eq(r.status, 200, "poll status (limit %d)" % limit)
            b = r.json()
            got += b["entries"]
            after = b["next"]
            if b["done"] or len(got) > len(ids):
                break
        eq([e["id"] for e in got], ids, "ids polled in pages of %d" % limit)
    # the 3 entries after each of the first 60 cursors (a node holds about 12 of these entries,
    # so this crosses several node ends) and after some further on
    for k in list(range(60)) + [500, 999, len(ids) - 4]:
        b = s.request("GET", "/jobs/%s/logs?limit=3&after=%s" % (job, ids[k])).json()
        eq([e["id"] for e in b["entries"]], ids[k + 1:k + 4], "3 entries after entry %d" % k)
    for k in (0, 17, 750, len(ids) - 2):
        rest, _, end, _ = read_stream(s, "/jobs/%s/logs" % job, headers={"Last-Event-ID": ids[k]})
        eq([i for i, _ in rest], ids[k + 1:],
           "entries streamed after Last-Event-ID of entry %d" % k)
        eq(end, {"status": "done"}, "end after the rest resumed at entry %d" % k)


def test_polling_with_wait_returns_when_an_entry_comes():
    s = stack()
    q = unique_queue("pollwait")
    job = submit(s, {"type": "lines", "queue": q, "payload": {"count": 3}})
    first = s.request("GET", "/jobs/%s/logs" % job).json()
    eq([e["line"] for e in first["entries"]], ["queued"], "only the queued entry yet")
    result = {}

    def poll():
        t0 = time.time()
        result["r"] = s.request("GET", "/jobs/%s/logs?after=%s&wait=20" % (job, first["next"]))
        result["took"] = time.time() - t0

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.8)
    # started from this thread: a child's parent-death signal follows the thread that made it
    s.start_worker(queues=[q], types=["lines"])
    poller.join(30)
    r, took = result["r"], result["took"]
    eq(r.status, 200, "long-polled page")
    check(r.json()["entries"], "new entries after the wait", r.json())
    check(0.5 < took < 10, "answered when the entries came, not at the end of the wait", took)


def test_polling_wait_runs_out_with_no_entries():
    s = stack()
    job = submit(s, {"type": "sleep", "queue": unique_queue("idle"), "payload": {"ms": 1}})
    first = s.request("GET", "/jobs/%s/logs" % job).json()
    t0 = time.time()
    r = s.request("GET", "/jobs/%s/logs?after=%s&wait=1" % (job, first["next"]))
    took = time.time() - t0
    eq(r.status, 200, "empty page after the wait")
    b = r.json()
    eq((b["entries"], b["next"], b["status"], b["done"]), ([], first["next"], "queued", False),
       "empty page")
    check(0.8 < took < 5, "waited about 1 s", took)


# ---- limits and bad input ----------------------------------------------------------------------

def test_a_20000_byte_line_is_cut_to_16_kib_ending_in_ellipsis():
    s = stack()
    q = unique_queue("big")
    s.start_worker(queues=[q], types={"big": "python3 -c \"print('x' * 20000)\""})
    job = submit(s, {"type": "big", "queue": q})
    wait_done(s, job)
    logs, _, _, _ = read_stream(s, "/jobs/%s/logs" % job)
    out = [e["line"] for _, e in logs if e["stream"] == "stdout"]
    eq(len(out), 1, "one stdout entry")
    check(out[0].endswith(ELLIPSIS), "the cut line ends in an ellipsis", out[0][-10:])
    eq(len(out[0].encode()), 16384, "the cut line's size in bytes")


def test_log_max_keeps_the_last_entries():
    with harness.Stack(env={"JOBGATE_LOG_MAX": "50"}, programs=("submit", "status", "logs"),
                       name="logmax") as s:
        q = unique_queue("max")
        s.start_worker(queues=[q], types=["lines"], env={"JOBGATE_LOG_MAX": "50"})
        job = submit(s, {"type": "lines", "queue": q, "payload": {"count": 200}})
        wait_done(s, job)
        b = s.request("GET", "/jobs/%s/logs?limit=1000" % job).json()
        eq(len(b["entries"]), 50, "entries kept")
        eq(b["entries"][-1]["line"], "done", "the last entry is kept")


def test_unknown_job_is_404_in_both_modes_before_any_stream_bytes():
    s = stack()
    ghost = "37a8eec1.AAAAAAAAAAAAAAAAAAAAAA"
    expect_error(s.request("GET", "/jobs/%s/logs" % ghost), 404, "not_found")
    r = s.request("GET", "/jobs/%s/logs" % ghost, headers={"Accept": "text/event-stream"})
    expect_error(r, 404, "not_found")
    eq(r.header("content-type"), "application/json", "a JSON 404, not a stream")
    for bad in ("..", "x", "a" * 65, "37a8eec1.AAAAAAAAAAAAAAAAAAAAA%41"):
        expect_error(s.request("GET", "/jobs/%s/logs" % bad), 404, "not_found")


def test_malformed_cursors_and_parameters_are_400():
    s = stack()
    job = submit(s, {"type": "sleep", "queue": unique_queue("bad"), "payload": {"ms": 1}})
    for q in ("after=abc", "after=1-x", "after=-1", "after=1--2", "limit=0", "limit=1001",
              "limit=x", "wait=61", "wait=-1", "wait=x"):
        expect_error(s.request("GET", "/jobs/%s/logs?%s" % (job, q)), 400, "invalid_field")
    r = s.request("GET", "/jobs/%s/logs" % job,
                  headers={"Accept": "text/event-stream", "Last-Event-ID": "nope"})
    expect_error(r, 400, "invalid_field")


def test_cursor_at_or_past_the_largest_stream_id_is_400_not_503():
    s = stack()
    job = submit(s, {"type": "sleep", "queue": unique_queue("big"), "payload": {"ms": 1}})
    top = "18446744073709551615"
    for after in (top + "-" + top, top + "6", "1-" + top + "6", "99999999999999999999999"):
        r = s.request("GET", "/jobs/%s/logs?after=%s" % (job, after))
        expect_error(r, 400, "invalid_field", "after")
        r = s.request("GET", "/jobs/%s/logs" % job,
                      headers={"Accept": "text/event-stream", "Last-Event-ID": after})
        expect_error(r, 400, "invalid_field", "Last-Event-ID")
    for limit in ("18446744073709551617", "-18446744073709551617", "1e3"):
        expect_error(s.request("GET", "/jobs/%s/logs?limit=%s" % (job, limit)), 400,
                     "invalid_field", "limit")
    # the largest cursors that still have a successor are fine: an empty page
    for after in (top, top + "-" + str(2 ** 64 - 2), str(2 ** 64 - 2) + "-" + top):
        r = s.request("GET", "/jobs/%s/logs?after=%s" % (job, after))
        eq(r.status, 200, "GET logs?after=%s" % after)
        eq(r.json()["entries"], [], "entries after %s" % after)


def test_wrong_methods_on_logs_are_405():
    s = stack()
    job = submit(s, {"type": "sleep", "queue": unique_queue("m"), "payload": {"ms": 1}})
    r = s.request("POST", "/jobs/%s/logs" % job, json={})
    expect_error(r, 405, "method_not_allowed")
    check("GET" in r.header("allow", ""), "Allow lists GET", r.header("allow"))


def _open_fcgi_stream(address, uri):
    """Sends one SSE request to a FastCGI socket and returns the socket, unread."""
    s = harness.fcgi_connect(address, timeout=10)
    s.sendall(harness.fcgi_request_bytes(
        harness.fcgi_params("GET", uri, headers={"Accept": "text/event-stream"})))
    return s


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_it_parks_fewer_streams_and_keeps_answering():
    s = stack()
    job = submit(s, {"type": "sleep", "queue": unique_queue("fds"), "payload": {"ms": 1}})
    sock = os.path.join(s.dir, "lowfd-logs.sock")
    log_path = os.path.join(s.dir, "lowfd-logs.log")
    # a jobgate-logs of its own with 64 descriptors at most (hard limit: it cannot raise it)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["sh", "-c", 'ulimit -n 64 && exec "$0" --socket "$1" --threads 2',
             harness.binary("logs"), sock], env=s.program_env(), stdout=log, stderr=log)
    streams = []
    try:
        harness.wait_until(lambda: harness.accepts(sock), 10, "the low-fd logs program listens")
        for _ in range(100):
            try:
                streams.append(_open_fcgi_stream(sock, "/api/jobs/%s/logs" % job))
            except OSError:
                break   # the listen backlog is full: enough pressure
        time.sleep(1)
        cpu0 = _cpu_seconds(proc.pid)
        time.sleep(2)
        busy = _cpu_seconds(proc.pid) - cpu0
        check(busy < 0.5, "no busy loop while out of descriptors (CPU s in 2 s)", busy)
        for st in streams[:60]:   # free some descriptors: plain requests get through again
            st.close()
        r = harness.fcgi_request(sock, harness.fcgi_params("GET", "/api/jobs/%s/logs" % job),
                                 timeout=10)
        eq(r.status, 200, "a plain poll answered by the process that ran out of descriptors")
        check(proc.poll() is None, "the program is still running")
    finally:
        for st in streams:
            st.close()
        proc.terminate()
        proc.wait(10)
    with open(log_path) as f:
        log = f.read()
    check(log.count("\n") < 200, "warnings are rate-limited, not a line per failed accept",
          log.count("\n"))


def test_a_client_that_stops_reading_a_big_backlog_does_not_hold_a_thread_for_ever():
    with harness.Stack(programs=("submit", "status", "logs"), threads=2, name="stuck") as s:
        q = unique_queue("fat")
        s.start_worker(queues=[q],
                       types={"fat": "python3 -c \"[print('x' * 1000) for _ in range(4000)]\""})
        job = submit(s, {"type": "fat", "queue": q})
        wait_done(s, job)
        sock = s.sock("logs")
        # two clients (as many as the program has threads) ask for the 4 MB log and never read
        stuck = [_open_fcgi_stream(sock, "/api/jobs/%s/logs" % job) for _ in range(2)]
        try:
            time.sleep(0.5)
            t0 = time.time()
            r = harness.fcgi_request(sock, harness.fcgi_params(
                "GET", "/api/jobs/%s/logs?limit=1" % job), timeout=40)
            took = time.time() - t0
            eq(r.status, 200, "a request after the stuck ones")
            check(took < 25, "answered once the stuck writes timed out (10 s), not never", took)
        finally:
            for st in stuck:
                st.close()


# ---- large logs: bounded memory, threads never held (issue 9, findings 1-3) ---------------------

LOG_LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "redis", "log.lua")


def _add_lines_as_one_batch(s, job, lines):
    """Appends lines to a running job's log in one log.lua call, as a worker does with a batch
    (docs/redis.md): one `log` message wakes the viewers with all of them at once."""
    jkey, lkey = "jobgate:{%s}:job:%s" % (job[:8], job), "jobgate:{%s}:log:%s" % (job[:8], job)
    fence = s.redis("HGET", jkey, "fence")
    with open(LOG_LUA) as f:
        script = f.read()
    args = ["EVAL", script, "2", jkey, lkey, job, fence, "10000", "jobgate:{%s}:events" % job[:8], "",
            ""]
    for ln in lines:
        args += ["stdout", ln]
    got = s.redis(*args)
    eq(got[0], 1, "log.lua accepted the batch")


def test_a_long_polled_page_of_1000_lines_of_16_kib_arrives_whole():
    s = stack()
    q = unique_queue("wide")
    s.start_worker(queues=[q], types={"hold": "sleep 30"})
    job = submit(s, {"type": "hold", "queue": q})
    s.wait_status(job, "running")
    first = s.request("GET", "/jobs/%s/logs" % job).json()
    result = {}

    def poll():
        result["r"] = s.request("GET", "/jobs/%s/logs?after=%s&limit=1000&wait=30"
                                % (job, first["next"]), timeout=60)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.8)
    check(poller.is_alive(), "the poll waits for entries")
    line = "y" * 16384
    _add_lines_as_one_batch(s, job, [line] * 1000)
    poller.join(60)
    r = result.get("r")
    check(r is not None, "the long poll was answered")
    eq(r.status, 200, "the long-polled page of 1,000 lines of 16 KiB")
    b = r.json()
    eq(len(b["entries"]), 1000, "entries in the page")
    check(all(e["line"] == line for e in b["entries"]), "every line whole")
    eq(b["next"], b["entries"][-1]["id"], "next is the page's last entry")
    eq(b["done"], False, "done")
    s.request("POST", "/jobs/%s/cancel" % job)
    eq(s.request("GET", "/jobs/%s/logs?limit=1" % job).status, 200, "jobgate-logs still serves")


def _big_log_job(s, lines):
    """A finished job whose log holds `lines` lines of 16,000 bytes."""
    q = unique_queue("fat")
    s.start_worker(queues=[q], types={
        "fat": "yes \"$(head -c 16000 /dev/zero | tr '\\0' z)\" | head -n %d" % lines})
    job = submit(s, {"type": "fat", "queue": q})
    wait_done(s, job, timeout=120)
    return job


def _rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024.0
    return 0.0


def _timed_poll(sock, job):
    t0 = time.time()
    r = harness.fcgi_request(sock, harness.fcgi_params(
        "GET", "/api/jobs/%s/logs?limit=5" % job), timeout=30)
    return r, time.time() - t0


def test_20_streams_of_a_40_mb_backlog_that_never_read_leave_logs_small_answering_then_dropped():
    # under AddressSanitizer (make test SANITIZE=1), freed memory is held in a quarantine that
    # would count in the RSS: keep it small, so that what is measured is what the program holds
    san = {"ASAN_OPTIONS": harness.SAN_ENV["ASAN_OPTIONS"] + ":quarantine_size_mb=4"}
    with harness.Stack(programs=("submit", "status", "logs"), threads=4, name="fat40",
                       env=san) as s:
        job = _big_log_job(s, 2600)   # about 41.6 MB of lines
        sock = s.sock("logs")
        pid = s.program_pids("logs")[0]
        streams = [_open_fcgi_stream(sock, "/api/jobs/%s/logs" % job) for _ in range(20)]
        try:
            time.sleep(2)
            rss = _rss_mb(pid)
            check(rss < 100, "jobgate-logs RSS (MB) with 20 unread streams of a 40 MB backlog "
                  "(expected below 100)", rss)
            for i in range(5):
                r, took = _timed_poll(sock, job)
                eq(r.status, 200, "poll %d while 20 streams are stuck" % i)
                check(took < 1, "poll %d answered in under a second" % i, took)
            rss = _rss_mb(pid)
            check(rss < 100, "jobgate-logs RSS (MB) after the polls", rss)
            # clients that take nothing for 10 s are dropped: their descriptors come back
            base = open_fds(pid)
            harness.wait_until(lambda: open_fds(pid) <= base - 20, 25,
                               "jobgate-logs to drop the 20 streams that read nothing")
        finally:
            for st in streams:
                st.close()


def test_eight_slow_readers_of_a_big_backlog_do_not_hold_the_request_threads():
    with harness.Stack(programs=("submit", "status", "logs"), threads=4, name="slow8") as s:
        job = _big_log_job(s, 600)   # about 9.6 MB of lines
        sock = s.sock("logs")
        streams = [_open_fcgi_stream(sock, "/api/jobs/%s/logs" % job) for _ in range(8)]
        stop = threading.Event()
        got = [0] * len(streams)

        def slow(i, st):
            st.settimeout(1)
            while not stop.is_set():
                try:
                    chunk = st.recv(4096)
                except OSError:
                    continue
                if not chunk:
                    return
                got[i] += len(chunk)
                time.sleep(0.05)

        readers = [threading.Thread(target=slow, args=(i, st), daemon=True)
                   for i, st in enumerate(streams)]
        for t in readers:
            t.start()
        try:
            time.sleep(1)
            for i in range(5):
                r, took = _timed_poll(sock, job)
                eq(r.status, 200, "poll %d while eight slow readers take the backlog" % i)
                check(took < 2, "poll %d answered while the slow readers read" % i, took)
            check(all(g > 0 for g in got), "every slow reader is getting its stream", got)
        finally:
            stop.set()
            for st in streams:
                st.close()


# ---- lost wake-ups (issue 9, finding 4) --------------------------------------------------------

def _line_through_a_fault(name, before, after, line, within, why):
    """A stream on a running job sees its "started" entry; then the pipeline `before` + a log
    batch of one stdout `line` (log.lua, as a worker sends it) + `after` runs on Redis; the next
    log event on the stream must be that line, within `within` seconds (`why` says the bound)."""
    with harness.Stack(programs=("submit", "status", "logs"), name=name) as s:
        q = unique_queue(name[:2])
        s.start_worker(queues=[q], types={"hold": "sleep 30"})
        job = submit(s, {"type": "hold", "queue": q})
        s.wait_status(job, "running")
        sse = SSE(s, "/jobs/%s/logs" % job, timeout=20)
        events = sse.events()
        seen = []
        while not any(e == "log" and "started" in d for e, _, d in seen):
            seen.append(next(events))
        jkey, lkey = "jobgate:{%s}:job:%s" % (job[:8], job), "jobgate:{%s}:log:%s" % (job[:8], job)
        fence = s.redis("HGET", jkey, "fence")
        with open(LOG_LUA) as f:
            script = f.read()
        batch = ("EVAL", script, "2", jkey, lkey, job, fence, "10000", "jobgate:{%s}:events" % job[:8], "",
                 "", "stdout", line)
        s.redis_pipeline(list(before) + [batch] + list(after))
        t0 = time.time()
        got = None
        for e, _, d in events:
            if e == "log":
                got = json.loads(d)["line"]
                break
        eq(got, line, "the next line on the stream")
        check(time.time() - t0 < within, why, time.time() - t0)
        sse.close()
        s.request("POST", "/jobs/%s/cancel" % job)


def test_a_line_whose_read_by_the_loop_fails_still_reaches_the_stream():
    # the batch is published, then Redis answers nobody for 3 s: the loop's read fails
    _line_through_a_fault("lostline", (), [("CLIENT", "PAUSE", "3000", "ALL")], "after the stall",
                          12, "it came soon after the stall, not at a reconnect")


def test_a_line_published_while_the_subscriber_reconnects_still_reaches_the_stream():
    # the subscriber's connection is killed, then the batch is published to nobody: only the
    # resync after the subscriber's reconnect can bring the line
    _line_through_a_fault("pubkill", [("CLIENT", "KILL", "TYPE", "pubsub")], (),
                          "while nobody listened", 10, "it came at the resync, not at the job's end")
