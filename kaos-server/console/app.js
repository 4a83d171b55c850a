// KAOS console: plain JavaScript against the HTTP API (/v1), no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: null, session: null, busy: false, pending: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function status(text) { $("status").textContent = text; }
const usd = (n) => "$" + (n || 0).toFixed(4);
const ms = (n) => (n >= 1000 ? (n / 1000).toFixed(2) + " s" : n >= 10 ? Math.round(n) + " ms" : n.toFixed(1) + " ms");

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + state.token }, options.headers || {});
  const response = await fetch("/v1" + path, Object.assign({}, options, { headers }));
  if (response.status === 401) { forget(); throw new Error("the token was refused"); }
  return response;
}

async function json(path, options) {
  const response = await api(path, options);
  if (response.status === 204) return null;
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.type + ": " + body.error.message : response.statusText);
  return body;
}

// ---------- token ----------
function start() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("kaos-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  state.token = sessionStorage.getItem("kaos-token");
  if (state.token) connect(); else showLogin();
}

function showLogin() {
  $("login").hidden = false; $("app").hidden = true; $("logout").hidden = true;
  $("token-input").focus();
}

function forget() { sessionStorage.removeItem("kaos-token"); state.token = null; showLogin(); }

async function connect() {
  $("login").hidden = true; $("app").hidden = false; $("logout").hidden = false;
  try { await loadSessions(); status("connected"); } catch (e) { status(String(e.message || e)); }
  const first = document.querySelector("#session-list button");
  (first || $("new-session-id")).focus();
}

// ---------- sessions ----------
async function loadSessions() {
  const { sessions } = await json("/sessions");
  const list = $("session-list");
  list.replaceChildren();
  for (const s of sessions) {
    const button = el("button", { type: "button", "data-session": s.id },
      el("span", { text: s.id }), el("small", { text: s.turns + " · " + usd(s.cost_usd) }));
    if (s.id === state.session) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => openSession(s.id));
    list.append(el("li", {}, button));
  }
}

async function openSession(id) {
  state.session = id;
  $("chat-title").textContent = id;
  $("composer-input").disabled = false; $("send").disabled = false;
  $("approval").hidden = true; $("trace").hidden = true;
  $("messages").replaceChildren(); $("turns").replaceChildren(); $("session-totals").textContent = "";
  document.querySelectorAll("#session-list button").forEach((b) =>
    b.setAttribute("aria-current", String(b.dataset.session === id)));
  try {
    const detail = await json("/sessions/" + encodeURIComponent(id));
    renderHistory(detail);
  } catch (e) {
    if (!String(e.message).startsWith("not_found")) status(e.message);
  }
  // Only if nothing happened meanwhile (a turn started, an approval is waiting).
  if (state.session === id && !state.busy && !state.pending) $("composer-input").focus();
}

function renderHistory(detail) {
  const messages = $("messages");
  messages.replaceChildren();
  for (const record of detail.records) {
    for (const m of record.messages || []) {
      if (m.role === "user") addMessage("user", m.content);
      else if (m.role === "assistant") {
        for (const call of m.tool_calls || []) addTool(call.name, call.arguments, "ok");
        if (m.content) addMessage("assistant", m.content);
      }
    }
  }
  renderTurns(detail);
}

function renderTurns(detail) {
  $("session-totals").textContent = detail.turns + " turn(s) · " + detail.total_tokens + " tokens · " + usd(detail.cost_usd);
  const turns = $("turns");
  turns.replaceChildren();
  for (const record of detail.records) {
    if (!record.messages || record.messages.length === 0) continue;
    const button = el("button", { type: "button", "data-turn": record.turn },
      "Turn " + record.turn + " · " + usd(record.cost_usd));
    button.addEventListener("click", () => showTrace(record.turn));
    turns.append(el("li", {}, button));
  }
}

function addMessage(role, text) {
  const item = el("li", { class: "msg " + role, text });
  $("messages").append(item);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

function addTool(name, args, phase) {
  const text = name + "(" + (typeof args === "string" ? args : JSON.stringify(args)) + ")";
  const item = el("li", { class: "msg tool " + phase, text });
  $("messages").append(item);
  return item;
}

// ---------- turns ----------
async function send(message) {
  if (state.busy || !state.session) return;
  addMessage("user", message);
  const body = JSON.stringify({ message });
  await stream("/sessions/" + encodeURIComponent(state.session) + "/turns", body);
}

async function decide(decision) {
  if (!state.pending || state.busy) return;
  const run = state.pending;
  state.pending = null;
  $("approval").hidden = true;
  addMessage("note", decision + ": " + run.tool);
  await stream("/runs/" + encodeURIComponent(run.runId) + "/approval", JSON.stringify({ decision }));
}

async function stream(path, body) {
  state.busy = true; $("send").disabled = true; status("running…");
  const view = { text: null, tools: new Map() };
  try {
    const response = await api(path, {
      method: "POST", body,
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    });
    if (!response.ok) {
      const error = await response.json().catch(() => ({}));
      throw new Error(error.error ? error.error.message : response.statusText);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        handleFrame(frame, view);
      }
    }
    status("ready");
  } catch (e) {
    addMessage("note", "error: " + (e.message || e));
    status("error");
  } finally {
    state.busy = false; $("send").disabled = false;
    if (state.pending) $("approve").focus();
    await refresh();
  }
}

function handleFrame(frame, view) {
  let type = "message", data = "";
  for (const line of frame.split("\n")) {
    if (line.startsWith("event: ")) type = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  const event = JSON.parse(data);
  switch (type) {
    case "text_delta":
      if (!view.text) view.text = addMessage("assistant", "");
      view.text.textContent += event.text;
      view.text.scrollIntoView({ block: "nearest" });
      break;
    case "span":
      if (event.subject === "llm_call" && event.phase === "start" && !(event.attributes || {}).internal) view.text = null;
      if (event.subject === "tool_call") {
        if (event.phase === "start") {
          const a = event.attributes || {};
          view.tools.set(event.span_id, addTool(a.tool_name || event.name, a.arguments || {}, "running"));
        } else if (view.tools.has(event.span_id)) {
          const item = view.tools.get(event.span_id);
          const failed = event.phase === "error" || (event.attributes || {}).is_error;
          item.className = "msg tool " + (failed ? "error" : "ok");
          const result = (event.attributes || {}).result;
          if (result) item.textContent += " → " + result;
        }
      }
      break;
    case "tool_call_approval_required":
      state.pending = { runId: event.run_id, tool: event.tool_name };
      $("approval-text").textContent = "The agent wants to run " + event.tool_name + ": " + event.reason;
      $("approval-args").textContent = JSON.stringify(event.arguments, null, 2);
      $("approval").hidden = false;
      status("waiting for approval");
      break;
    case "turn_summary":
      status("turn " + event.turn_number + " " + event.stop_reason);
      break;
    case "error":
      addMessage("note", "error: " + (event.error ? event.error.message : data));
      break;
  }
}

async function refresh() {
  try {
    await loadSessions();
    if (state.session) renderTurns(await json("/sessions/" + encodeURIComponent(state.session)));
  } catch (e) { /* a session with no finished turn yet */ }
}

// ---------- trace ----------
async function showTrace(turn) {
  let trace;
  try { trace = await json("/sessions/" + encodeURIComponent(state.session) + "/turns/" + turn + "/trace"); }
  catch (e) { status(e.message); return; }
  $("trace-title").textContent = "Trace of turn " + turn;
  $("trace-totals").textContent = ms(trace.duration_ms) + " · " + (trace.input_tokens + trace.output_tokens) +
    " tokens · " + usd(trace.cost_usd) + " · run " + trace.run_id;
  const total = Math.max(trace.duration_ms, 1);
  const rows = trace.spans.map((s) => {
    const bar = el("div", { class: "span-bar " + s.subject + (s.status === "error" ? " error" : "") });
    bar.style.left = (100 * s.offset_ms / total).toFixed(2) + "%";
    bar.style.width = Math.max(0.5, 100 * s.duration_ms / total).toFixed(2) + "%";
    const name = el("td", { class: "span-name", text: s.name });
    name.style.paddingLeft = (6 + 14 * s.depth) + "px";
    return el("tr", { "data-subject": s.subject, "data-span": s.span_id },
      name,
      el("td", { class: "track-cell" }, el("div", { class: "track", title: s.name + " " + ms(s.duration_ms) }, bar)),
      el("td", { class: "num", text: ms(s.duration_ms) }),
      el("td", { class: "num", text: String(s.input_tokens + s.output_tokens) }),
      el("td", { class: "num span-cost", text: usd(s.cost_usd) }));
  });
  $("waterfall").tBodies[0].replaceChildren(...rows);
  $("waterfall").tFoot.replaceChildren(el("tr", {},
    el("td", { text: "Total" }), el("td", { class: "track-cell" }),
    el("td", { class: "num", text: ms(trace.duration_ms) }),
    el("td", { class: "num", text: String(trace.input_tokens + trace.output_tokens) }),
    el("td", { class: "num", text: usd(trace.cost_usd) })));
  $("trace").hidden = false;
  $("trace-close").focus();
}

// ---------- wiring ----------
document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token-input").value.trim();
    sessionStorage.setItem("kaos-token", state.token);
    $("token-input").value = "";
    connect();
  });
  $("logout").addEventListener("click", forget);
  $("new-session").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("new-session-id").value.trim();
    $("new-session-id").value = "";
    if (id) openSession(id);
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("composer-input").value.trim();
    if (!text) return;
    $("composer-input").value = "";
    send(text);
  });
  $("composer-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  for (const id of ["approve", "always", "deny"]) {
    $(id).addEventListener("click", (e) => decide(e.currentTarget.dataset.decision));
  }
  $("trace-close").addEventListener("click", () => { $("trace").hidden = true; $("composer-input").focus(); });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("trace").hidden) { $("trace").hidden = true; $("composer-input").focus(); }
  });
  start();
});
