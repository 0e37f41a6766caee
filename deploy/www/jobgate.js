// jobgate.js — the browser client for jobgate's HTTP API (contract sections 3-8 and 10).
// A dependency-free ES module with no build step: copy it into any site and import it.
//
//   import { JobGate } from "./jobgate.js";
//   const jg = new JobGate({ base: "/api", token: "..." });
//   const job = await jg.submit({ type: "sleep", payload: { ms: 2000, steps: 4 } });
//   await jg.follow(job.id, (ev) => console.log(ev));     // log lines, status changes, end
//
// Every failure is thrown (or rejected) as a JobGateError carrying the contract's
// {code, message} (plus the HTTP status); a network failure has code "network".

/** An error answered by jobgate ({"error":{"code","message"}}) or met on the way. */
export class JobGateError extends Error {
  /**
   * @param {string} code contract error code ("not_found", "unauthorized", ...) or "network"
   * @param {string} message human-readable text
   * @param {number} [status] HTTP status, 0 when no answer came
   */
  constructor(code, message, status = 0) {
    super(message);
    this.name = "JobGateError";
    this.code = code;
    this.status = status;
  }
}

const FINISHED = new Set(["done", "failed", "cancelled"]);
const CACHE_MAX = 500; // last seen job per id, for status() long polls

/** Is this job status final (done, failed, cancelled)? */
export function isFinished(status) {
  return FINISHED.has(status);
}

/**
 * Compares two log cursors ("<ms>-<seq>", growing with each entry): <0, 0 or >0.
 * Cursors of another shape are compared by length, then as text.
 */
export function compareCursors(a, b) {
  const re = /^(\d+)(?:-(\d+))?$/;
  const ma = re.exec(a), mb = re.exec(b);
  if (ma && mb) {
    const x = [BigInt(ma[1]), BigInt(ma[2] || 0)], y = [BigInt(mb[1]), BigInt(mb[2] || 0)];
    if (x[0] !== y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] === y[1] ? 0 : (x[1] < y[1] ? -1 : 1);
  }
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

function defaultBase() {
  try {
    return new URL("api", import.meta.url).pathname;
  } catch (e) {
    return "/api";
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal && signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      if (signal) signal.removeEventListener("abort", done);
      resolve();
    }
    if (signal) signal.addEventListener("abort", done);
  });
}

function isAbort(e) {
  return e && (e.name === "AbortError" || e.code === "aborted");
}

/** A client for one jobgate mount. */
export class JobGate {
  /**
   * @param {object} [opts]
   * @param {string} [opts.base] the API's mount prefix or URL (default: "api" next to this file,
   *   so "/api" when jobgate.js is served at "/jobgate.js")
   * @param {string} [opts.token] a JOBGATE_API_TOKENS / JOBGATE_READ_TOKENS token: sent as
   *   "Authorization: Bearer" by fetch, and as ?access_token= by EventSource (logs only)
   * @param {number} [opts.pollWait] seconds a long poll waits (default 25, at most 60)
   */
  constructor(opts = {}) {
    this.base = String(opts.base || defaultBase()).replace(/\/+$/, "");
    this.token = opts.token || "";
    this.pollWait = Math.min(60, Math.max(0, opts.pollWait ?? 25));
    this._jobs = new Map();
  }

  /** The absolute URL of a path under the mount ("/jobs/x" -> "https://host/api/jobs/x"). */
  url(path, query) {
    const u = new URL(this.base + path, location.href);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
    }
    return u.toString();
  }

  /**
   * One request; resolves {status, headers, data} (data: parsed JSON or null), rejects a
   * JobGateError for any answer >= 400 or no answer.
   */
  async request(method, path, { query, body, headers, signal } = {}) {
    const h = Object.assign({ Accept: "application/json" }, headers || {});
    if (this.token) h.Authorization = "Bearer " + this.token;
    const init = { method, headers: h, signal, cache: "no-store" };
    if (body !== undefined) {
      h["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(this.url(path, query), init);
    } catch (e) {
      if (isAbort(e)) throw e;
      throw new JobGateError("network", "jobgate is not reachable (" + e.message + ")", 0);
    }
    let data = null;
    if (r.status !== 204 && r.status !== 304) {
      const text = await r.text();
      try {
        data = text ? JSON.parse(text) : null;
      } catch (e) {
        data = null;
      }
    }
    if (r.status >= 400) {
      const err = data && data.error;
      if (err && err.code) throw new JobGateError(err.code, err.message || err.code, r.status);
      throw new JobGateError(r.status === 401 ? "unauthorized" : "http_" + r.status,
        "HTTP " + r.status + " " + (r.statusText || ""), r.status);
    }
    return { status: r.status, headers: r.headers, data };
  }

  _remember(job) {
    if (!job || !job.id) return job;
    this._jobs.delete(job.id);
    this._jobs.set(job.id, job);
    if (this._jobs.size > CACHE_MAX) this._jobs.delete(this._jobs.keys().next().value);
    return job;
  }

  /**
   * POST /jobs: submits a job. Resolves the job object (with "cached" / "coalesced" as the
   * server says).
   * @param {object} body {type, queue?, payload?, priority?, max_attempts?, timeout?, delay?,
   *   cache?, cache_ttl?, cache_version?}
   * @param {{idempotencyKey?: string, signal?: AbortSignal}} [opts] an Idempotency-Key makes a
   *   repeat within 24 h return the first job
   */
  async submit(body, { idempotencyKey, signal } = {}) {
    const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {};
    const r = await this.request("POST", "/jobs", { body, headers, signal });
    return this._remember(r.data);
  }

  /**
   * GET /jobs/{id}. With wait (seconds, up to 60) it long-polls: it resolves as soon as the job
   * differs from the version given (or the last version this client saw of it), or with that
   * same job object when the wait runs out (the server's 304).
   * @param {string} id
   * @param {{wait?: number, version?: number, signal?: AbortSignal}} [opts]
   */
  async status(id, { wait, version, signal } = {}) {
    const known = this._jobs.get(id);
    const v = version ?? (known ? known.version : undefined);
    const path = "/jobs/" + encodeURIComponent(id);
    if (wait && v !== undefined) {
      const r = await this.request("GET", path, {
        query: { wait: Math.min(60, wait) }, headers: { "If-None-Match": '"' + v + '"' }, signal,
      });
      if (r.status === 304) {
        if (known && known.version === v) return known;
        const again = await this.request("GET", path, { signal });
        return this._remember(again.data);
      }
      return this._remember(r.data);
    }
    const r = await this.request("GET", path, { signal });
    return this._remember(r.data);
  }

  /**
   * Calls onChange(job) with the job now and at each change until it is finished (or signal
   * aborts), by long polls. Resolves the final job (undefined when aborted).
   */
  async watch(id, onChange, { signal } = {}) {
    let job = null, delay = 500;
    while (!(signal && signal.aborted)) {
      try {
        const next = await this.status(id, { wait: job ? this.pollWait : 0, version: job ? job.version : undefined, signal });
        delay = 500;
        if (!job || next.version !== job.version) {
          job = next;
          onChange(job);
        }
        if (isFinished(job.status)) return job;
      } catch (e) {
        if (isAbort(e)) break;
        if (e.status > 0 && e.status < 500) throw e;
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 8000);
      }
    }
    return undefined;
  }

  /**
   * Follows a job's log: calls onEvent with {type:"log", entry:{id, ts, stream, line}},
   * {type:"status", status, progress, attempts} and, last, {type:"end", status}. Uses
   * Server-Sent Events, resuming after the last entry on every reconnect; falls back to
   * long-polled pages when EventSource is missing or keeps failing. Each entry is delivered
   * once, in order. Resolves the final status (undefined when signal aborts); rejects a
   * JobGateError for an answer that retrying cannot fix (404, 401, 400).
   * @param {string} id
   * @param {(event: object) => void} onEvent
   * @param {{signal?: AbortSignal, after?: string, poll?: boolean}} [opts] after: start after
   *   this cursor; poll: skip EventSource
   */
  follow(id, onEvent, { signal, after, poll } = {}) {
    const state = { last: after || null, status: null, progress: undefined, attempts: undefined };
    const deliver = (entry) => {
      if (state.last !== null && compareCursors(entry.id, state.last) <= 0) return;
      state.last = entry.id;
      onEvent({ type: "log", entry });
    };
    const setStatus = (s) => {
      if (s.status === state.status && s.progress === state.progress && s.attempts === state.attempts) return;
      state.status = s.status;
      state.progress = s.progress;
      state.attempts = s.attempts;
      onEvent({ type: "status", status: s.status, progress: s.progress, attempts: s.attempts });
    };
    if (poll || typeof EventSource !== "function") {
      return this._followPoll(id, state, deliver, setStatus, onEvent, signal);
    }
    return this._followSSE(id, state, deliver, setStatus, onEvent, signal);
  }

  _followSSE(id, state, deliver, setStatus, onEvent, signal) {
    const path = "/jobs/" + encodeURIComponent(id) + "/logs";
    return new Promise((resolve, reject) => {
      let es = null, failures = 0, timer = null, settled = false;
      const finish = (fn, v) => {
        if (settled) return;
        settled = true;
        if (es) es.close();
        clearTimeout(timer);
        if (signal) signal.removeEventListener("abort", onAbort);
        fn(v);
      };
      const onAbort = () => finish(resolve, undefined);
      if (signal) {
        if (signal.aborted) return resolve(undefined);
        signal.addEventListener("abort", onAbort);
      }
      const toPolling = () => {
        if (es) es.close();
        es = null;
        this._followPoll(id, state, deliver, setStatus, onEvent, signal).then(
          (v) => finish(resolve, v), (e) => finish(reject, e));
      };
      const open = () => {
        if (settled) return;
        const query = { stream: 1, after: state.last, access_token: this.token };
        es = new EventSource(this.url(path, query));
        es.addEventListener("open", () => { failures = 0; });
        es.addEventListener("log", (ev) => {
          let e;
          try { e = JSON.parse(ev.data); } catch (x) { return; }
          deliver(Object.assign({ id: ev.lastEventId }, e));
        });
        es.addEventListener("status", (ev) => {
          try { setStatus(JSON.parse(ev.data)); } catch (x) { /* ignored */ }
        });
        es.addEventListener("end", (ev) => {
          let s = state.status;
          try { s = JSON.parse(ev.data).status; } catch (x) { /* keep */ }
          state.status = s;
          onEvent({ type: "end", status: s });
          finish(resolve, s);
        });
        es.addEventListener("error", () => {
          if (settled) return;
          failures++;
          if (es.readyState === EventSource.CLOSED) {
            // the browser gave up (an HTTP error or no stream): ask once by polling, which
            // either says why (404, 401: final) or carries on without EventSource
            es = null;
            if (failures > 3) return toPolling();
            this.request("GET", path, { query: { after: state.last, limit: 1 }, signal }).then(
              () => { timer = setTimeout(open, 500 * failures); },
              (e) => {
                if (isAbort(e)) return finish(resolve, undefined);
                if (e.status > 0 && e.status < 500) return finish(reject, e);
                timer = setTimeout(open, Math.min(8000, 1000 * 2 ** failures));
              });
          } else if (failures > 5) {
            toPolling(); // reconnecting again and again without ever opening
          }
        });
      };
      open();
    });
  }

  async _followPoll(id, state, deliver, setStatus, onEvent, signal) {
    const path = "/jobs/" + encodeURIComponent(id) + "/logs";
    let after = state.last, delay = 500;
    while (!(signal && signal.aborted)) {
      let page;
      try {
        page = (await this.request("GET", path, {
          query: { after, limit: 1000, wait: this.pollWait }, signal,
        })).data;
        delay = 500;
      } catch (e) {
        if (isAbort(e)) return undefined;
        if (e.status > 0 && e.status < 500) throw e;
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 8000);
        continue;
      }
      for (const entry of page.entries || []) deliver(entry);
      if (page.next) after = page.next;
      if (state.last !== null && (!after || compareCursors(after, state.last) < 0)) after = state.last;
      if (page.status && page.status !== state.status) {
        setStatus({ status: page.status, progress: state.progress, attempts: state.attempts });
      }
      if (page.done) {
        onEvent({ type: "end", status: page.status });
        return page.status;
      }
    }
    return undefined;
  }

  /** POST /jobs/{id}/cancel: resolves the job (cancelled, or cancel_requested while running). */
  async cancel(id, { signal } = {}) {
    const r = await this.request("POST", "/jobs/" + encodeURIComponent(id) + "/cancel", { signal });
    return this._remember(r.data);
  }

  /** POST /jobs/{id}/retry (admin): a failed or cancelled job queued again; resolves the job. */
  async retry(id, { signal } = {}) {
    const r = await this.request("POST", "/jobs/" + encodeURIComponent(id) + "/retry", { signal });
    return this._remember(r.data);
  }

  /** DELETE /jobs/{id} (admin): removes a finished job and its log. */
  async remove(id, { signal } = {}) {
    await this.request("DELETE", "/jobs/" + encodeURIComponent(id), { signal });
    this._jobs.delete(id);
  }

  /**
   * GET /jobs (admin): newest first. Resolves {jobs, next}; pass next back as cursor for the
   * following page.
   * @param {{queue?: string, type?: string, status?: string, limit?: number, cursor?: string,
   *   signal?: AbortSignal}} [opts]
   */
  async jobs({ queue, type, status, limit, cursor, signal } = {}) {
    const r = await this.request("GET", "/jobs", { query: { queue, type, status, limit, cursor }, signal });
    return r.data;
  }

  /** GET /stats (admin): queues, totals, workers, cache counters. */
  async stats({ signal } = {}) {
    return (await this.request("GET", "/stats", { signal })).data;
  }

  /** GET /health (admin, never needs a token). */
  async health({ signal } = {}) {
    return (await this.request("GET", "/health", { signal })).data;
  }

  /** POST /queues/{queue}/pause (admin): resolves the queue's stats. */
  async pause(queue, { signal } = {}) {
    return (await this.request("POST", "/queues/" + encodeURIComponent(queue) + "/pause", { signal })).data;
  }

  /** POST /queues/{queue}/resume (admin): resolves the queue's stats. */
  async resume(queue, { signal } = {}) {
    return (await this.request("POST", "/queues/" + encodeURIComponent(queue) + "/resume", { signal })).data;
  }

  /** POST /queues/{queue}/retry-failed (admin): resolves {retried: N}. */
  async retryFailed(queue, { signal } = {}) {
    return (await this.request("POST", "/queues/" + encodeURIComponent(queue) + "/retry-failed", { signal })).data;
  }
}

// ---- one default client, for pages that talk to one mount --------------------------------
let client = new JobGate();

/** Sets the default client's options ({base, token, pollWait}); returns that client. */
export function configure(opts) {
  client = new JobGate(opts);
  return client;
}

/** The default client's submit(); see JobGate#submit. */
export const submit = (body, opts) => client.submit(body, opts);
/** The default client's status(); see JobGate#status. */
export const status = (id, opts) => client.status(id, opts);
/** The default client's follow(); see JobGate#follow. */
export const follow = (id, onEvent, opts) => client.follow(id, onEvent, opts);
/** The default client's cancel(); see JobGate#cancel. */
export const cancel = (id, opts) => client.cancel(id, opts);
/** The default client's retry(); see JobGate#retry. */
export const retry = (id, opts) => client.retry(id, opts);
