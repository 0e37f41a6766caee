"""The browser side (contract section 10, issue 14): deploy/www/jobgate.js, the demo page and the
dashboard, driven in a real headless Chromium (Debian's chromium + chromium-driver +
python3-selenium) against a real stack: redis, the web programs under spawn-fcgi, a worker for
the demo types, and the front (nginx or Apache, each with its shipped config) serving deploy/www/
at / and /ops/ (the harness's www mounts).

Every test collects the browser's console log; any error in it fails the test, except network
errors a test names as expected (a 401 it provokes, a 503 while it has jobgate-logs stopped).
A failing test saves a screenshot in its temp dir and prints the path."""

import contextlib
import json
import os
import re
import shutil
import tempfile
import time

import harness
from harness import check, eq, wait_until

WWW = os.path.join(harness.ROOT, "deploy", "www")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# ---- the stack: the front (nginx or Apache) serves deploy/www at / (as make run does) ---------

# The HTTP suites' front parameter: run.py runs these tests behind nginx, then behind Apache.
FRONTS = harness.FRONTS

# www also at /ops/, with the API at /ops/api/ behind a proxy that strips "/ops": the pages
# served under a prefix, finding the API next to them by default.
WWW_MOUNTS = (("/", WWW), ("/ops/", WWW))
API_AT = ("/ops/api/",)

_stacks = {}   # (name, front, Redis kind) -> Stack


def web_stack(name="browser", env=None):
    """A stack with every built web program (admin too, once built), its front serving
    deploy/www at / and /ops/ (the API also at /ops/api/), and a worker for the demo types on
    queue "default". One per name and pass (front, Redis kind), kept for the module's pass."""
    here = (harness.FRONT, harness.REDIS_KIND)
    for key in [k for k in _stacks if k[1:] != here]:   # run.py switched passes
        _stacks.pop(key).stop(check=False)
    s = _stacks.get((name,) + here)
    if s is not None and not s.stopped and not s.broken and not s.check_alive():
        return s
    if s is not None:
        s.stop(check=False)
    programs = [p for p in ("submit", "status", "logs", "cache", "admin")
                if p in harness.DEFAULT_PROGRAMS or os.access(harness.binary(p), os.X_OK)]
    s = harness.Stack(name=name, env=env, programs=programs, www=WWW_MOUNTS, api_at=API_AT)
    s.start_worker(queues=("default",), concurrency=4, grace=2)
    _stacks[(name,) + here] = s
    return s


# ---- the browser ------------------------------------------------------------------------------

class Browser:
    """A headless Chromium with its console log collected."""

    def __init__(self, stack, width=1200, height=900):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        self.stack = stack
        self.dir = tempfile.mkdtemp(prefix="jg-browser-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--disable-extensions", "--window-size=%d,%d" % (width, height),
                  "--user-data-dir=" + os.path.join(self.dir, "profile")):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(CHROMEDRIVER, log_output=os.path.join(self.dir, "chromedriver.log"))
        self.driver = webdriver.Chrome(service=service, options=opts)
        self.driver.set_script_timeout(60)
        self.console = []

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.stack.port, path)

    def open(self, path="/", before_load=None):
        """Loads a page (before_load: JS run before the page's own scripts) and waits until its
        script marked the document ready."""
        if before_load:
            self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": before_load})
        self.driver.get(self.url(path))
        wait_until(lambda: self.js("return document.documentElement.dataset.ready === '1'"), 15,
                   "page %s to load its script" % path)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def js_async(self, script, *args):
        return self.driver.execute_async_script(script, *args)

    def collect_console(self):
        with contextlib.suppress(Exception):
            self.console += self.driver.get_log("browser")
        return self.console

    def console_errors(self, allowed=()):
        """Console entries at level SEVERE that none of the allowed regexes matches."""
        return [e for e in self.collect_console() if e.get("level") == "SEVERE"
                and not any(re.search(a, e.get("message", "")) for a in allowed)]

    def screenshot(self, name="failure"):
        path = os.path.join(self.dir, name + ".png")
        self.driver.save_screenshot(path)
        return path

    def close(self, keep=False):
        with contextlib.suppress(Exception):
            self.driver.quit()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def browser(stack, allowed_errors=(), **kw):
    """Yields a Browser; afterwards fails on console errors (other than allowed_errors). On any
    failure saves a screenshot under the browser's temp dir and names it in the error."""
    b = Browser(stack, **kw)
    ok = False
    try:
        yield b
        errors = b.console_errors(allowed_errors)
        if errors:
            raise AssertionError("browser console: expected no errors, got:\n" +
                                 "\n".join("%s %s" % (e.get("level"), e.get("message")) for e in errors))
        ok = True
    except AssertionError as e:
        shot = _try_screenshot(b)
        raise AssertionError("%s\n(screenshot: %s; console: %s)" % (e, shot, _console_text(b))) from None
    except BaseException:
        shot = _try_screenshot(b)
        print("# screenshot of the failure: %s" % shot, flush=True)
        raise
    finally:
        b.close(keep=not ok)


def _try_screenshot(b):
    try:
        return b.screenshot()
    except Exception as e:  # the browser itself is gone
        return "(none: %s)" % e


def _console_text(b):
    return json.dumps([e.get("message") for e in b.collect_console()][-20:])


def wait_js(b, script, timeout, what, *args):
    """Polls a JS expression (a `return ...` script) until it is truthy; returns its value."""
    return wait_until(lambda: b.js(script, *args), timeout, what, 0.05)


# ---- demo page helpers -------------------------------------------------------------------------

# A MutationObserver that records, for each job card, every log line as it appears with the
# job's status and progress at that moment, and every progress value shown.
RECORDER = r"""
window.__seen = {};
const rec = (card) => (window.__seen[card.dataset.id] ||= {lines: [], progress: [], statuses: []});
new MutationObserver((muts) => {
  for (const m of muts) {
    const card = m.target.closest && m.target.closest('article.job');
    if (!card) continue;
    const r = rec(card);
    if (m.type === 'childList') {
      for (const n of m.addedNodes) {
        if (n.classList && n.classList.contains('ln')) {
          r.lines.push({text: n.textContent, stream: n.classList[1], cursor: n.dataset.cursor || null,
                        status: card.dataset.status, progress: card.dataset.progress});
        }
      }
    } else if (m.attributeName === 'aria-valuenow') {
      r.progress.push(Number(m.target.getAttribute('aria-valuenow')));
    } else if (m.attributeName === 'data-status') {
      r.statuses.push(card.dataset.status);
    }
  }
}).observe(document.getElementById('jobs'), {subtree: true, childList: true, attributes: true,
                                              attributeFilter: ['aria-valuenow', 'data-status']});
return true;
"""


def demo_submit(b, type_, payload, queue="default", max_attempts=None):
    """Fills the demo form and submits; returns the new job's id (from its card)."""
    before = b.js("return document.querySelectorAll('article.job').length")
    b.js("""
        const [type, payload, queue, attempts] = arguments;
        const f = (id) => document.getElementById(id);
        f('type').value = type; f('type').dispatchEvent(new Event('change'));
        f('payload').value = payload; f('queue').value = queue;
        if (attempts) f('max_attempts').value = attempts;
        f('submit').click();""", type_, json.dumps(payload), queue, max_attempts)
    wait_js(b, "return document.querySelectorAll('article.job').length > arguments[0]", 10,
            "a new job card after submitting", before)
    return b.js("return document.querySelector('article.job').dataset.id")


def card_status(b, job_id):
    return b.js("return document.querySelector('article.job[data-id=\"' + arguments[0] + '\"]').dataset.status",
                job_id)


def stdout_lines(b, job_id):
    return b.js("""return [...document.querySelectorAll('article.job[data-id="' + arguments[0] + '"] .ln.stdout')]
                   .map((n) => n.textContent)""", job_id)


# ---- tests: the demo page ----------------------------------------------------------------------

def test_demo_page_sleep_job_shows_progress_reaching_100_and_each_step_line_while_it_runs():
    s = web_stack()
    steps = 6
    with browser(s) as b:
        b.open("/")
        b.js(RECORDER)
        job_id = demo_submit(b, "sleep", {"ms": 3000, "steps": steps})
        wait_js(b, "return document.querySelector('article.job').dataset.status === 'done'", 30,
                "the job's card to say done")
        seen = b.js("return window.__seen[arguments[0]]", job_id)
        lines = [ln for ln in seen["lines"] if ln["stream"] == "stdout"]
        eq([ln["text"] for ln in lines], ["step %d/%d" % (i, steps) for i in range(1, steps + 1)],
           "stdout lines shown")
        # every step but the last (which may land with the end) appeared while the card said running
        early = [ln["status"] for ln in lines[:-1]]
        eq(early, ["running"] * (steps - 1), "the card's status when each step line appeared")
        check(100 in seen["progress"], "the progress bar reached 100", seen["progress"])
        check(seen["progress"] == sorted(seen["progress"]), "progress only grows", seen["progress"])
        check(any(0 < p < 100 for p in seen["progress"]), "progress shown between 0 and 100",
              seen["progress"])
        eq(b.js("return document.querySelector('article.job .bar').getAttribute('aria-valuenow')"), "100",
           "final progress bar value")
        result = b.js("return document.querySelector('article.job .result').textContent")
        eq(result, 'result: {"slept_ms":3000}', "result shown")
        eq(s.job(job_id)["status"], "done", "status through the API")


def test_demo_page_lines_job_of_2000_lines_shows_each_line_once_in_order():
    s = web_stack()
    n = 2000
    with browser(s) as b:
        b.open("/")
        job_id = demo_submit(b, "lines", {"count": n})
        wait_js(b, "return document.querySelector('article.job').dataset.status === 'done' && "
                   "document.querySelectorAll('article.job .ln.stdout').length >= arguments[0]", 30,
                "the card to say done with %d stdout lines" % n, n)
        time.sleep(0.5)   # anything delivered twice would arrive now
        got = stdout_lines(b, job_id)
        want = ["line %d" % i for i in range(1, n + 1)]
        if got != want:
            dups = len(got) - len(set(got))
            raise AssertionError("expected line 1..line %d once each in order, got %d lines (%d "
                                 "duplicates), first difference at %r" % (
                                     n, len(got), dups,
                                     next((i for i, (a, c) in enumerate(zip(got, want)) if a != c), len(want))))
        cursors = b.js("return [...document.querySelectorAll('article.job .ln')].map((n) => n.dataset.cursor)")
        eq(len(cursors), len(set(cursors)), "distinct log cursors shown (no entry twice)")


def test_demo_page_cancel_turns_a_running_job_cancelled():
    s = web_stack()
    with browser(s) as b:
        b.open("/")
        job_id = demo_submit(b, "sleep", {"ms": 30000, "steps": 30})
        wait_js(b, "return document.querySelector('article.job .ln.stdout')", 20,
                "the first step line of the running job")
        eq(card_status(b, job_id), "running", "status shown before cancel")
        b.js("document.querySelector('article.job button.cancel').click()")
        wait_js(b, "return document.querySelector('article.job').dataset.status === 'cancelled'", 10,
                "the card to say cancelled")
        eq(s.job(job_id)["status"], "cancelled", "status through the API")
        check(b.js("return document.querySelector('article.job button.cancel').disabled"),
              "the cancel button is disabled once cancelled")
        eq(b.js("return document.querySelector('article.job button.retry').disabled"), False,
           "the retry button is enabled once cancelled")


def test_demo_page_card_is_not_taken_back_by_the_cancels_answer_arriving_after_the_change():
    s = web_stack()
    with browser(s) as b:
        b.open("/")
        job_id = demo_submit(b, "sleep", {"ms": 30000, "steps": 30})
        wait_js(b, "return document.querySelector('article.job .ln.stdout')", 20,
                "the first step line of the running job")
        card = 'article.job[data-id="%s"]' % job_id
        b.js(SLOW_CANCEL, card)
        b.js("document.querySelector(arguments[0] + ' button.cancel').click()", card)
        s.wait_status(job_id, "cancelled", timeout=15)
        check_not_taken_back_by_the_late_cancel_answer(b, card, "the demo card")


def test_demo_page_retry_runs_a_failed_job_again_and_its_log_goes_on_without_repeats():
    # POST /jobs/{id}/retry is jobgate-admin's (issue 11)
    s = web_stack()
    with browser(s) as b:
        b.open("/")
        job_id = demo_submit(b, "fail", {"message": "boom"}, max_attempts=1)
        wait_js(b, "return document.querySelector('article.job').dataset.status === 'failed' && "
                   "document.querySelectorAll('article.job .ln.stderr').length === 1", 20,
                "the card to say failed with the stderr line")
        b.js("document.querySelector('article.job button.retry').click()")
        wait_js(b, "return document.querySelector('article.job').dataset.status === 'failed' && "
                   "document.querySelectorAll('article.job .ln.stderr').length === 2", 20,
                "the card to say failed again with a second stderr line")
        eq(s.job(job_id)["attempts"], 1, "attempts after the retry (reset, then one)")
        cursors = b.js("return [...document.querySelectorAll('article.job .ln[data-cursor]')].map((n) => n.dataset.cursor)")
        r = s.request("GET", "/jobs/%s/logs?limit=1000" % job_id)
        eq(cursors, [e["id"] for e in r.json()["entries"]], "log entries shown (each once, in order)")


def test_follow_resumes_without_gaps_or_duplicates_when_jobgate_logs_is_restarted_mid_stream():
    s = web_stack(name="browser-restart")   # its own stack: this test stops a program
    steps = 30
    # while jobgate-logs is down, the front answers the stream's reconnects 503 (expected here)
    allowed = [r"/api/jobs/[^ ]+/logs.* 503", r"EventSource's response has a MIME type"]
    with browser(s, allowed_errors=allowed) as b:
        b.open("/")
        job = s.submit(type="sleep", payload={"ms": 9000, "steps": steps})
        b.js("""
            window.__ev = []; window.__end = null;
            import('/jobgate.js').then(({JobGate}) => {
              new JobGate().follow(arguments[0], (e) => window.__ev.push(e))
                .then((st) => { window.__end = st; }, (e) => { window.__end = 'error ' + e.code; });
            });""", job["id"])
        wait_js(b, "return window.__ev.filter((e) => e.type === 'log' && /^step/.test(e.entry.line)).length >= 5",
                20, "five step lines through follow()")
        logs = s.procs["logs"][-1]
        logs.stop()
        at_restart = b.js("return window.__ev.filter((e) => e.type === 'log').length")
        time.sleep(2.5)
        s.start_program("logs")
        wait_until(lambda: harness.accepts(s.sock("logs")), 10, "jobgate-logs socket again")
        wait_js(b, "return window.__end !== null", 40, "follow() to end")
        ev = b.js("return window.__ev")
        eq(b.js("return window.__end"), "done", "follow()'s final status")
        entries = [e["entry"] for e in ev if e["type"] == "log"]
        steps_seen = [e["line"] for e in entries if e["stream"] == "stdout"]
        check(at_restart < len(entries), "entries arrived after the restart",
              "%d at restart, %d in all" % (at_restart, len(entries)))
        eq(steps_seen, ["step %d/%d" % (i, steps) for i in range(1, steps + 1)], "step lines delivered")
        # the whole log, as the API pages it, equals what follow() delivered: no gap, no duplicate
        r = s.request("GET", "/jobs/%s/logs?limit=1000" % job["id"])
        eq([e["id"] for e in entries], [e["id"] for e in r.json()["entries"]], "cursors delivered")
        eq(ev[-1]["type"], "end", "the last event")


def test_follow_without_EventSource_falls_back_to_polling_and_sees_every_line():
    s = web_stack()
    steps = 12
    with browser(s) as b:
        b.open("/", before_load="delete window.EventSource;")
        eq(b.js("return typeof window.EventSource"), "undefined", "EventSource in the page")
        job_id = demo_submit(b, "sleep", {"ms": 2400, "steps": steps})
        wait_js(b, "return document.querySelector('article.job').dataset.status === 'done' && "
                   "document.querySelectorAll('article.job .ln.stdout').length >= arguments[0]", 30,
                "the card to say done with every step line", steps)
        time.sleep(0.5)
        eq(stdout_lines(b, job_id), ["step %d/%d" % (i, steps) for i in range(1, steps + 1)],
           "stdout lines shown")
        with open(os.path.join(s.dir, "%s-access.log" % s.front)) as f:
            mine = [ln for ln in f if "/jobs/%s/logs" % job_id in ln]
        check(mine and all("wait=" in ln and "stream=1" not in ln for ln in mine),
              "the log was read by long polls only (wait=, no stream=1)", mine[:5])


# ---- tests: the dashboard (admin routes, issue 11) -----------------------------------------------

def test_dashboard_shows_a_paused_queue_and_resumes_it():
    s = web_stack()
    q = harness.unique_queue("dash")
    s.submit(type="echo", queue=q)
    r = s.request("POST", "/queues/%s/pause" % q)
    eq(r.status, 200, "pausing the queue through the API (%r)" % r)
    with browser(s) as b:
        b.open("/dashboard/")
        row = "tr[data-queue=\"%s\"]" % q
        wait_js(b, "return document.querySelector(arguments[0] + ' .badge.paused')", 15,
                "queue %s shown paused" % q, row)
        eq(b.js("return document.querySelector(arguments[0] + ' td.queued').textContent", row), "1",
           "queued count shown")
        b.js("document.querySelector(arguments[0] + ' button.resume').click()", row)
        wait_js(b, "return !document.querySelector(arguments[0] + ' .badge.paused') && "
                   "document.querySelector(arguments[0] + ' button.pause')", 15,
                "queue %s shown running again" % q, row)
        queues = s.request("GET", "/queues").json()
        eq(_queue_paused(queues, q), False, "the queue's paused flag through the API")


def _queue_paused(queues, name):
    qs = queues.get("queues", queues) if isinstance(queues, dict) else queues
    if isinstance(qs, dict):
        return qs[name]["paused"]
    return next(x for x in qs if x.get("name", x.get("queue")) == name)["paused"]


def test_dashboard_retry_runs_a_failed_job_again():
    s = web_stack()
    job = s.submit(type="fail", payload={"message": "boom"}, max_attempts=1)
    first = s.wait_status(job["id"], "failed")
    with browser(s) as b:
        b.open("/dashboard/#/job/" + job["id"])
        wait_js(b, "return document.querySelector('#job-view[data-status=\"failed\"] button.retry')", 15,
                "the job page showing a failed job with a retry button")
        b.js("document.querySelector('#job-view button.retry').click()")
        again = wait_until(lambda: (lambda j: j if j["finished_at"] and j["finished_at"] != first["finished_at"]
                                    else None)(s.job(job["id"])), 20, "the job to finish a second time")
        eq(again["status"], "failed", "status after running again")
        check(again["version"] > first["version"], "the job changed", (first["version"], again["version"]))
        wait_js(b, "return document.querySelector('#job-view').dataset.status === 'failed' && "
                   "document.querySelectorAll('#job-view .ln.stderr').length >= 2", 20,
                "the job page's live log showing the second attempt's stderr")


# Delays the answer of every POST .../cancel by 2.5 s in the page (its fetch), and records each
# status shown by the element matching arguments[0] (the dashboard's job page, a demo card).
SLOW_CANCEL = r"""
const orig = window.fetch;
window.fetch = async (input, init) => {
  const r = await orig(input, init);
  const url = String(typeof input === 'string' ? input : input.url).split('?')[0];
  if (init && init.method === 'POST' && url.endsWith('/cancel')) {
    await new Promise((res) => setTimeout(res, 2500));
  }
  return r;
};
window.__statuses = [];
new MutationObserver(() => {
  const v = document.querySelector(arguments[0]);
  if (v && v.dataset.status !== window.__statuses[window.__statuses.length - 1]) {
    window.__statuses.push(v.dataset.status);
  }
}).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['data-status']});
return true;
"""


def check_not_taken_back_by_the_late_cancel_answer(b, selector, what):
    """After SLOW_CANCEL and a cancel the worker carried out: once the late answer of the cancel
    has arrived, selector still shows 'cancelled', and showed nothing else after it."""
    wait_js(b, "return document.querySelector(arguments[0]).dataset.status === 'cancelled'", 10,
            "%s to say cancelled" % what, selector)
    time.sleep(3.5)   # the delayed answer of the cancel has arrived by now
    statuses = b.js("return window.__statuses")
    eq(b.js("return document.querySelector(arguments[0]).dataset.status", selector), "cancelled",
       "%s's status after the older answer of the cancel arrived (seen: %s)" % (what, statuses))
    eq(statuses[statuses.index("cancelled"):], ["cancelled"],
       "statuses %s showed from the first 'cancelled' on" % what)


def test_dashboard_job_page_is_not_taken_back_by_an_older_answer_arriving_last():
    s = web_stack()
    job = s.submit(type="sleep", payload={"ms": 30000, "steps": 30})
    s.wait_status(job["id"], "running")
    with browser(s) as b:
        b.open("/dashboard/#/job/" + job["id"])
        wait_js(b, "return document.querySelector('#job-view[data-status=\"running\"] button.cancel')", 15,
                "the job page showing the running job")
        b.js(SLOW_CANCEL, "#job-view")
        b.js("document.querySelector('#job-view button.cancel').click()")
        # the worker stops the job; the long poll shows it before the cancel's own answer
        # (cancel_requested, still running) arrives, 2.5 s late
        s.wait_status(job["id"], "cancelled", timeout=15)
        check_not_taken_back_by_the_late_cancel_answer(b, "#job-view", "the job page")
        check(b.js("return document.querySelector('#job-view button.retry').disabled") is False,
              "the retry button is enabled on the cancelled job")


def test_pages_served_under_a_prefix_reach_the_api_next_to_them():
    s = web_stack()
    with browser(s) as b:
        b.open("/ops/")
        job_id = demo_submit(b, "sleep", {"ms": 800, "steps": 4})
        wait_js(b, "return document.querySelector('article.job').dataset.status === 'done' && "
                   "document.querySelectorAll('article.job .ln.stdout').length === 4", 20,
                "the job done with its 4 log lines, under /ops/")
        eq(stdout_lines(b, job_id), ["step %d/4" % i for i in range(1, 5)], "lines shown")
        with open(os.path.join(s.dir, "%s-access.log" % s.front)) as f:
            paths = [ln.split('"')[1].split(" ")[1] for ln in f if '"' in ln and job_id in ln]
        check(any(p.startswith("/ops/api/jobs/%s/logs" % job_id) for p in paths),
              "the page read the log through /ops/api/", paths[:6])
        b.open("/ops/dashboard/")
        wait_js(b, "return document.querySelector('#queues tr[data-queue=\"default\"]')", 15,
                "the dashboard's default queue, under /ops/")


def test_dashboard_jobs_table_filters_and_pages_newest_first():
    s = web_stack()
    q = harness.unique_queue("list")
    ids = [s.submit(type="echo", queue=q, payload={"i": i})["id"] for i in range(7)]   # no worker: queued
    # the API's order (jobs created in one millisecond may come in either order)
    listed = s.request("GET", "/jobs?queue=%s&limit=10" % q).json()["jobs"]
    newest_first = [j["id"] for j in listed]
    eq(sorted(newest_first), sorted(ids), "the jobs GET /jobs lists")
    created = [j["created_at"] for j in listed]
    eq(created, sorted(created, reverse=True), "created_at down the API's listing")

    def shown(b):
        return b.js("return [...document.querySelectorAll('#jobs tbody tr[data-id]')].map((r) => r.dataset.id)")
    with browser(s) as b:
        b.open("/dashboard/#/jobs?queue=%s&limit=3" % q)
        pages = []
        for n in (3, 3, 1):
            wait_js(b, "return document.querySelectorAll('#jobs tbody tr[data-id]').length === arguments[0] && "
                       "!arguments[1].includes(document.querySelector('#jobs tbody tr[data-id]').dataset.id)",
                    15, "a page of %d jobs" % n, n, [i for p in pages for i in p])
            pages.append(shown(b))
            if len(pages) < 3:
                b.js("document.querySelector('.pager a.older').click()")
        eq(pages, [newest_first[0:3], newest_first[3:6], newest_first[6:7]], "pages of 3, newest first")
        eq(b.js("return document.querySelector('.pager a.older')"), None, "an 'older' link on the last page")
        b.js("document.querySelector('.pager a.newer').click()")
        wait_js(b, "return document.querySelectorAll('#jobs tbody tr[data-id]').length === 3", 15,
                "the page before the last again")
        eq(shown(b), newest_first[3:6], "jobs after going back one page")
        # the filter form: status "done" in this queue, where nothing ran, is an empty table
        b.js("""const f = document.getElementById('filters');
                f.querySelector('[name=status]').value = 'done';
                f.querySelector('button[type=submit]').click();""")
        wait_js(b, "return /status=done/.test(location.hash) && document.querySelector('#jobs tbody td.muted') && "
                   "document.querySelector('#jobs tbody td.muted').textContent === 'No jobs match.'", 15,
                "the filtered (empty) table")
        eq(b.js("return document.querySelector('#filters [name=queue]').value"), q, "queue filter kept")


# ---- tests: tokens (issue 10) ------------------------------------------------------------------

def test_pages_with_tokens_set_work_once_given_a_token_and_say_so_without_one():
    s = web_stack(name="browser-tokens",
                  env={"JOBGATE_API_TOKENS": "w-tok-1", "JOBGATE_READ_TOKENS": "r-tok-1"})
    allowed = [r" 401 "]   # the answers the page is shown without a token
    with browser(s, allowed_errors=allowed) as b:
        b.open("/")
        b.js("localStorage.removeItem('jobgate.token')")
        b.js("""const f = (id) => document.getElementById(id);
                f('type').value = 'echo'; f('type').dispatchEvent(new Event('change'));
                f('submit').click();""")
        msg = wait_js(b, "const m = document.getElementById('message'); return !m.hidden && m.textContent",
                      10, "a message after submitting without a token")
        check("token" in msg, "the message says a token is needed", msg)
        eq(b.js("return document.querySelectorAll('article.job').length"), 0, "job cards")
        # a read token cannot submit: the page says the token was refused
        b.js("document.getElementById('token').value = 'r-tok-1'; "
             "document.querySelector('#token-form button').click();"
             "document.getElementById('submit').click();")
        msg = wait_js(b, "const m = document.getElementById('message'); return !m.hidden && m.textContent",
                      10, "a message after submitting with a read token")
        check("refused" in msg, "the message says the token was refused", msg)
        eq(b.js("return document.querySelectorAll('article.job').length"), 0, "job cards")
        b.js("document.getElementById('token').value = 'w-tok-1'; "
             "document.querySelector('#token-form button').click();")
        job_id = demo_submit(b, "sleep", {"ms": 600, "steps": 3})
        wait_js(b, "return document.querySelector('article.job').dataset.status === 'done' && "
                   "document.querySelectorAll('article.job .ln.stdout').length === 3", 20,
                "the job done with its 3 log lines, with the token")
        eq(stdout_lines(b, job_id), ["step 1/3", "step 2/3", "step 3/3"], "lines shown")
        # the dashboard: the token is remembered; without it, the same message
        b.open("/dashboard/")
        wait_js(b, "return document.querySelector('#queues tr[data-queue=\"default\"]')", 15,
                "the dashboard's queues with the stored token")
        b.js("localStorage.removeItem('jobgate.token')")
        b.open("/dashboard/")
        msg = wait_js(b, "const m = document.getElementById('message'); return !m.hidden && m.textContent",
                      10, "a message on the dashboard without a token")
        check("token" in msg, "the dashboard says a token is needed", msg)
