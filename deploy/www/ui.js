// ui.js — what the demo page and the dashboard share: the API client built from the page's
// settings (<meta name="jobgate-api"> for the mount, the token kept in localStorage), the token
// box, the message bar, and small DOM helpers. Not needed to use jobgate.js elsewhere.
import { JobGate } from "./jobgate.js";

const TOKEN_KEY = "jobgate.token";

/** The page's API base: <meta name="jobgate-api" content="/api">, else jobgate.js's default. */
export function apiBase() {
  const m = document.querySelector('meta[name="jobgate-api"]');
  return (m && m.content.trim()) || undefined;
}

/** A JobGate client for this page, with the stored token. */
let pageClient = null;

export function makeClient() {
  pageClient = new JobGate({ base: apiBase(), token: storedToken() });
  return pageClient;
}

export function storedToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch (e) {
    return "";
  }
}

/** Wires the token form (#token-form, #token) to the client: saved, and applied at once. */
export function tokenBox(client, onChange) {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  if (!form || !input) return;
  input.value = client.token;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    client.token = input.value.trim();
    try {
      if (client.token) localStorage.setItem(TOKEN_KEY, client.token);
      else localStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* private mode: the token lasts for this page */ }
    hideMessage();
    if (onChange) onChange();
  });
}

/** Shows a message in the page's bar (#message); kind "error" or "info". */
export function showMessage(text, kind = "error") {
  const bar = document.getElementById("message");
  if (!bar) return;
  bar.textContent = text;
  bar.className = "message " + kind;
  bar.hidden = false;
}

export function hideMessage() {
  const bar = document.getElementById("message");
  if (bar) bar.hidden = true;
}

/** A user-facing sentence for a JobGateError. */
export function explain(e) {
  if (e && e.code === "unauthorized") {
    if (pageClient && pageClient.token) {
      return "The access token was refused (" + e.message + "): a write needs one of " +
        "JOBGATE_API_TOKENS, a read one of those or of JOBGATE_READ_TOKENS.";
    }
    return "This jobgate needs an access token: enter one in the token box above.";
  }
  if (e && e.code === "network") return "jobgate is not reachable: " + e.message;
  if (e && e.code) return e.code + ": " + e.message;
  return String(e && e.message ? e.message : e);
}

/** el("div", {class: "x", onclick: f}, child, "text", ...) */
export function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (k === "class") n.className = v;
    else if (k === "text") n.textContent = v;
    else n.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    n.append(c instanceof Node ? c : String(c));
  }
  return n;
}

/** "2026-11-30T03:01:02.123Z" -> "03:01:02" (local), or "—". */
export function shortTime(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  return isNaN(d) ? ts : d.toLocaleTimeString([], { hour12: false });
}
