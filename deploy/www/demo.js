// demo.js — the demo page (index.html): submits demo jobs and shows each one moving
// queued → running → done/failed/cancelled, with its progress, live log, result, and cancel /
// retry buttons. Several jobs at once; everything through jobgate.js.
import { isFinished } from "./jobgate.js";
import { makeClient, tokenBox, showMessage, hideMessage, explain, el, shortTime } from "./ui.js";

const client = makeClient();
const SAMPLES = {
  sleep: { payload: { ms: 4000, steps: 8 }, hint: "K log lines “step i/K” with progress over N ms" },
  lines: { payload: { count: 200 }, hint: "prints line 1 … line N" },
  echo: { payload: { hello: "world" }, hint: "the result is the payload" },
  fail: { payload: { message: "something broke" }, hint: "prints the message on stderr and exits 1" },
  flaky: { payload: { fail_times: 1 }, hint: "fails the first N attempts, then succeeds" },
};

const $ = (id) => document.getElementById(id);

function pickType() {
  const s = SAMPLES[$("type").value];
  $("payload").value = JSON.stringify(s.payload);
  $("hint").textContent = s.hint;
}

/** One job on the page: its card, and the log and status followers that keep it current. */
class JobView {
  constructor(job) {
    this.job = job;
    this.abort = new AbortController();
    this.lines = 0;
    this.last = undefined; // the cursor of the last log entry shown
    // status, attempts and progress from the log stream's status events, which come in order: a
    // long-poll answer can arrive after a newer event, and must not take the card back
    this.live = null;
    this.badge = el("span", { class: "badge" });
    this.fill = el("div");
    this.bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, this.fill);
    this.meta = el("span", { class: "muted meta" });
    this.cancelBtn = el("button", { class: "ghost cancel", type: "button", onclick: () => this.cancel() }, "Cancel");
    this.retryBtn = el("button", { class: "ghost retry", type: "button", onclick: () => this.retry() }, "Retry");
    this.log = el("div", { class: "log" });
    this.outcome = el("div", { class: "outcome mono" });
    this.node = el("article", { class: "job", "data-id": job.id },
      el("div", { class: "job-head" },
        el("strong", {}, job.type), this.badge, el("span", { class: "id" }, job.id),
        el("span", { class: "actions" }, this.cancelBtn, this.retryBtn)),
      this.bar, el("div", { class: "row", style: "margin-top:.35rem" }, this.meta),
      this.log, this.outcome);
    this.render();
    this.start();
  }

  start() {
    const signal = this.abort.signal;
    client.watch(this.job.id, (j) => {
      this.job = Object.assign({}, j, this.live && !isFinished(j.status) ? this.live : {});
      this.render();
    }, { signal })
      .catch((e) => this.problem(e));
    client.follow(this.job.id, (ev) => this.onEvent(ev), { signal, after: this.last })
      .catch((e) => this.problem(e));
  }

  onEvent(ev) {
    if (ev.type === "log") {
      const e = ev.entry;
      this.last = e.id; // a retry follows on from here
      this.log.append(el("div", { class: "ln " + e.stream, "data-cursor": e.id, title: e.ts }, e.line));
      this.lines++;
      this.log.scrollTop = this.log.scrollHeight;
    } else if (ev.type === "status" && !isFinished(this.job.status) && !isFinished(ev.status)) {
      // the stream's status events come between long-poll answers: show them at once. An end
      // (done, failed, cancelled) is shown from the long poll's answer, woken by the same change,
      // which carries the result or error and the finish time the event does not
      this.live = Object.assign(this.live || {}, { status: ev.status });
      if (ev.attempts !== undefined) this.live.attempts = ev.attempts;
      if (ev.progress !== undefined && ev.progress !== null) this.live.progress = ev.progress;
      Object.assign(this.job, this.live);
      this.render();
    }
  }

  render() {
    const j = this.job;
    this.node.dataset.status = j.status;
    this.badge.className = "badge status " + j.status;
    this.badge.textContent = j.status + (j.cancel_requested && !isFinished(j.status) ? " (cancelling)" : "");
    let p = typeof j.progress === "number" ? j.progress : (j.status === "done" ? 100 : 0);
    this.fill.style.width = p + "%";
    this.bar.className = "bar " + j.status;
    this.bar.setAttribute("aria-valuenow", String(p));
    this.node.dataset.progress = String(typeof j.progress === "number" ? j.progress : "");
    const parts = ["attempt " + j.attempts + "/" + j.max_attempts, "created " + shortTime(j.created_at)];
    if (j.started_at) parts.push("started " + shortTime(j.started_at));
    if (j.finished_at) parts.push("finished " + shortTime(j.finished_at));
    if (j.run_at && !isFinished(j.status)) parts.push("next try " + shortTime(j.run_at));
    if (j.cached) parts.push("from cache");
    this.meta.textContent = parts.join(" · ");
    this.cancelBtn.disabled = isFinished(j.status) || !!j.cancel_requested;
    this.retryBtn.disabled = !(j.status === "failed" || j.status === "cancelled");
    this.outcome.textContent = "";
    if (j.status === "done") this.outcome.append(el("span", { class: "result" }, "result: " + JSON.stringify(j.result)));
    else if (j.error) this.outcome.append(el("span", { class: "error" }, "error: " + j.error));
  }

  problem(e) {
    if (e && e.name === "AbortError") return;
    showMessage(explain(e));
  }

  async cancel() {
    try {
      const j = await client.cancel(this.job.id);
      // the long poll may have shown a newer version (the job cancelled) before this answer
      // (cancel requested, still running) arrived: an older one never takes the card back
      if (j.version < this.job.version) return;
      this.job = Object.assign({}, j);
      this.render();
    } catch (e) {
      this.problem(e);
    }
  }

  async retry() {
    try {
      this.job = Object.assign({}, await client.retry(this.job.id));
      this.live = null;
      this.abort.abort();
      this.abort = new AbortController();
      this.log.append(el("div", { class: "ln system" }, "— retried —"));
      this.render();
      this.start();
    } catch (e) {
      this.problem(e);
    }
  }
}

async function onSubmit(ev) {
  ev.preventDefault();
  hideMessage();
  let payload;
  try {
    payload = JSON.parse($("payload").value || "{}");
  } catch (e) {
    showMessage("The payload is not valid JSON: " + e.message);
    return;
  }
  const body = {
    type: $("type").value,
    queue: $("queue").value.trim() || "default",
    payload,
    max_attempts: Number($("max_attempts").value) || 3,
    priority: Number($("priority").value) || 0,
  };
  $("submit").disabled = true;
  try {
    const job = await client.submit(body);
    const none = $("no-jobs");
    if (none) none.remove();
    $("jobs").prepend(new JobView(Object.assign({}, job)).node);
  } catch (e) {
    showMessage(explain(e));
  } finally {
    $("submit").disabled = false;
  }
}

$("type").addEventListener("change", pickType);
$("submit-form").addEventListener("submit", onSubmit);
tokenBox(client);
pickType();
document.documentElement.dataset.ready = "1";
