// The dashboard page: sign-in, one server-sent-event stream read with fetch (so that the key
// travels in the Authorization header, never in a URL), the activation table, charts, and the
// detail panel (record, logs, lineage). DOM work is batched to one update per animation frame.
import { LineChart } from "./chart.js";

const KEY = "triggerhub.apikey";
const MAX_ROWS = 300;  // rows kept in the table; older ones are dropped
const HEALTH_EVERY_MS = 5000;  // feeds and pool: GET /api/v1/status, one request per 5 s
const API = "/api/v1/namespaces/_";
const $ = (id) => document.getElementById(id);

const state = { rows: [], pendingRows: [], drawScheduled: false, abort: null, dropped: 0, health: null };
const charts = {};

function authHeader() {
  // X-Requested-With: the hub then answers a 401 without the challenge that opens a browser prompt.
  return { Authorization: "Basic " + btoa(sessionStorage.getItem(KEY) || ""), "X-Requested-With": "XMLHttpRequest" };
}

async function api(path) {
  const response = await fetch(API + path, { headers: authHeader() });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((body && body.error) || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function showLogin(message) {
  state.abort?.abort();
  clearInterval(state.health);
  $("board").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("connection").textContent = "signed out";
}

function showBoard() {
  $("login").hidden = true;
  $("board").hidden = false;
  $("logout").hidden = false;
  charts.triggers ??= new LineChart($("chart-triggers"));
  charts.actions ??= new LineChart($("chart-actions"));
  charts.latency ??= new LineChart($("chart-latency"));
  charts.rules ??= new LineChart($("chart-rules"));
  charts.ruleLatency ??= new LineChart($("chart-rule-latency"));
  connect();
  clearInterval(state.health);
  refreshHealth();
  state.health = setInterval(refreshHealth, HEALTH_EVERY_MS);
}

// ------------------------------------------------------------------ the stream

async function connect() {
  state.abort?.abort();
  const abort = new AbortController();
  state.abort = abort;
  let response;
  try {
    response = await fetch(API + "/dashboard/stream", { headers: authHeader(), signal: abort.signal });
  } catch (error) {
    if (!abort.signal.aborted) retry(`stream failed: ${error.message}`);
    return;
  }
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    showLogin("The API key was not accepted: check it against the hub's AUTH line.");
    return;
  }
  if (!response.ok) { retry(`stream answered HTTP ${response.status}`); return; }
  $("connection").textContent = "live";
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        handle(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (error) {
    if (abort.signal.aborted) return;
  }
  if (!abort.signal.aborted) retry("stream ended");
}

function retry(reason) {
  $("connection").textContent = `reconnecting (${reason})`;
  setTimeout(() => { if (sessionStorage.getItem(KEY)) connect(); }, 2000);
}

function handle(message) {
  let name = "message";
  let data = "";
  for (const line of message.split("\n")) {
    if (line.startsWith("event: ")) name = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  const payload = JSON.parse(data);
  if (name === "activations") addRows(payload);
  else if (name === "summary") addSummary(payload);
}

// ------------------------------------------------------------------ charts

function addSummary(s) {
  charts.triggers.push(s.triggers);
  const perAction = {};
  const all = [];
  for (const [name, stats] of Object.entries(s.actions)) {
    perAction[name] = stats.count;
    all.push(stats);
  }
  charts.actions.push(perAction);
  // The slowest action's percentiles: an upper bound over all actions in that second.
  const worst = (p) => all.reduce((m, stats) => Math.max(m, stats[p]), 0);
  charts.latency.push({ p50: worst("p50"), p95: worst("p95"), p99: worst("p99") });
  const perRule = {};
  const ruleP95 = {};
  for (const [name, stats] of Object.entries(s.rules)) {
    perRule[name] = stats.count;
    ruleP95[name] = stats.p95;
  }
  charts.rules.push(perRule);
  charts.ruleLatency.push(ruleP95);
  const lines = [];
  for (const [name, count] of Object.entries(s.triggers)) lines.push(`trigger ${name}: ${count}/s`);
  for (const [name, stats] of Object.entries(s.rules)) {
    lines.push(`rule ${name}: ${stats.count}/s, p50 ${stats.p50} ms, p95 ${stats.p95} ms, p99 ${stats.p99} ms`);
  }
  if (s.capped) lines.push("(more records than one read per tick: rates are a lower bound)");
  $("rates").textContent = lines.join(" · ");
}

// ------------------------------------------------------------------ the table

function addRows(rows) {
  state.pendingRows.push(...rows);
  if (state.drawScheduled) return;
  state.drawScheduled = true;
  requestAnimationFrame(drawRows);
}

function matches(row) {
  const name = $("filter-name").value.trim();
  const status = $("filter-status").value;
  return (!name || row.name.includes(name)) && (!status || row.status === status);
}

function rowElement(row, shownMs) {
  const tr = document.createElement("tr");
  tr.dataset.activationId = row.activationId;
  tr.dataset.shownMs = String(shownMs);
  if (row.statusCode !== 0) tr.className = "failed";
  const cells = [new Date(row.start).toLocaleTimeString(), row.name, row.status,
                 row.duration ?? "", row.rule ?? "", row.trigger ?? "", row.activationId];
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = String(text);
    tr.appendChild(td);
  }
  tr.hidden = !matches(row);
  tr.addEventListener("click", () => openDetail(row));
  return tr;
}

function drawRows() {
  state.drawScheduled = false;
  const rows = state.pendingRows;
  state.pendingRows = [];
  const shownMs = Date.now();
  const body = $("activations").tBodies[0];
  const fragment = document.createDocumentFragment();
  // The newest first: the stream sends each batch newest first.
  for (const row of rows) fragment.appendChild(rowElement(row, shownMs));
  state.rows.unshift(...rows);  // state.rows[i] is the table's row i
  body.insertBefore(fragment, body.firstChild);
  while (body.rows.length > MAX_ROWS) {
    body.deleteRow(-1);
    state.rows.pop();
    state.dropped += 1;
  }
  $("dropped").textContent = state.dropped ? `${state.dropped} older rows dropped` : "";
}

function refilter() {
  const body = $("activations").tBodies[0];
  state.rows.forEach((row, i) => { body.rows[i].hidden = !matches(row); });
}

// ------------------------------------------------------------------ feeds and pool

function tableRows(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = String(text ?? "");
      tr.appendChild(td);
    }
    return tr;
  }));
}

async function refreshHealth() {
  const response = await fetch("/api/v1/status", { headers: authHeader() }).catch(() => null);
  const body = response && await response.json().catch(() => null);
  if (!body || !body.components) {
    $("health-error").textContent = `status unavailable${response ? ` (HTTP ${response.status})` : ""}`;
    return;
  }
  $("health-error").textContent = "";
  const feeds = body.components.feeds?.feeds ?? [];
  tableRows($("feeds").tBodies[0], feeds.map((f) => [f.trigger, f.feed, f.reason ? `${f.status}: ${f.reason}` : f.status,
                                                      f.received, f.fired, f.rejected]));
  const pool = body.components.pool ?? {};
  tableRows($("pool").tBodies[0], Object.entries(pool).filter(([k]) => k !== "probe_ms").map(([k, v]) => [k, v]));
}

// ------------------------------------------------------------------ detail and lineage

async function openDetail(row) {
  $("detail").hidden = false;
  $("detail-id").textContent = row.activationId;
  $("detail-record").textContent = "loading…";
  $("detail-logs").textContent = "";
  $("lineage").textContent = "loading…";
  try {
    const [record, logs] = await Promise.all([api(`/activations/${row.activationId}`),
                                              api(`/activations/${row.activationId}/logs`)]);
    $("detail-record").textContent = JSON.stringify(record, null, 2);
    $("detail-logs").textContent = logs.logs.join("\n") || "(no logs)";
  } catch (error) {
    $("detail-record").textContent = `could not read the record: ${error.message}`;
  }
  $("lineage").replaceChildren(await lineage(row));
}

async function lineage(row) {
  const view = document.createElement("div");
  view.appendChild(await chain(row));
  if (row.event) view.appendChild(await storedLineage(row.event));
  return view;
}

// The event's stored lineage (GET .../events/{id}/lineage), when the record names its event.
async function storedLineage(eventId) {
  try {
    const doc = await api(`/events/${encodeURIComponent(eventId)}/lineage`);
    const pre = document.createElement("pre");
    pre.className = "lineage-document";
    pre.textContent = JSON.stringify(doc, null, 2);
    return pre;
  } catch (error) {
    return text(`stored lineage of event ${eventId}: ${error.message}`);
  }
}

// From the records alone: the trigger's activation, whose logs name every rule and the
// activation it started, then the record's causes (sequence component -> sequence).
async function chain(row) {
  const list = document.createElement("ol");
  list.className = "lineage-chain";
  if (row.triggerActivation) {
    try {
      const fired = await api(`/activations/${row.triggerActivation}`);
      list.appendChild(item(`trigger ${fired.name} fired: ${fired.activationId}`, fired.activationId));
      for (const line of fired.logs) {
        const entry = JSON.parse(line);
        list.appendChild(item(`rule ${entry.rule} -> ${entry.action}: ${entry.activationId ?? "not run"}` +
                              (entry.success === false ? ` (${entry.error ?? "failed"})` : ""), entry.activationId));
      }
    } catch (error) {
      list.appendChild(item(`trigger activation ${row.triggerActivation}: ${error.message}`, row.triggerActivation));
    }
  }
  let id = row.cause;
  for (let depth = 0; id && depth < 10; depth++) {
    try {
      const record = await api(`/activations/${id}`);
      list.appendChild(item(`caused by ${record.name}: ${id} (${record.response?.status ?? ""})`, id));
      id = record.cause;
    } catch (error) {
      list.appendChild(item(`caused by ${id}: ${error.message}`, id));
      break;
    }
  }
  if (!list.children.length) return text("No lineage: the record names no trigger, event or cause.");
  return list;
}

function item(label, id) {
  const li = document.createElement("li");
  if (id) li.dataset.activationId = id;
  li.textContent = label;
  return li;
}

function text(message) {
  const p = document.createElement("p");
  p.textContent = message;
  return p;
}

// ------------------------------------------------------------------ start

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("apikey").value.trim());
  $("apikey").value = "";
  showBoard();
});
$("logout").addEventListener("click", () => { sessionStorage.removeItem(KEY); showLogin(); });
$("detail-close").addEventListener("click", () => { $("detail").hidden = true; });
$("filter-name").addEventListener("input", refilter);
$("filter-status").addEventListener("change", refilter);
if (sessionStorage.getItem(KEY)) showBoard(); else showLogin();
