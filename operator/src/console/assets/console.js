// dynoscope console: polls /api/state every 2 s and draws it. Plain JS, no
// dependencies; charts are SVG strings built here (see chart()).
"use strict";

const POLL_MS = 2000;
let selectedTrace = null;
let lastState = null;

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const mb = (bytes) => (bytes == null ? "–" : (bytes / 1048576).toFixed(1) + " MB");
const ms = (ns) => (ns / 1e6 < 10 ? (ns / 1e6).toFixed(2) : (ns / 1e6).toFixed(0)) + " ms";
const secs = (s) => (s == null ? "–" : (s * 1000).toFixed(1) + " ms");
const num = (n, d = 0) => (n == null ? "–" : Number(n).toFixed(d));
const ago = (s) => {
  if (s == null) return "–";
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
  return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
};

// A line chart of [[t, v], …] as an SVG string; `opts.limit` draws a dashed
// line (a quota) and marks the points above it.
function chart(points, opts = {}) {
  const w = opts.width || 260, h = opts.height || 56, pad = 4;
  const cls = opts.cls || "chart";
  const attrs = Object.entries(opts.data || {}).map(([k, v]) => ` data-${k}="${esc(v)}"`).join("");
  if (!points.length) return `<svg class="${cls}"${attrs} width="${w}" height="${h}"><text x="4" y="${h / 2}">no data yet</text></svg>`;
  const now = opts.now || points[points.length - 1][0];
  const t0 = now - (opts.window || 900);
  const max = Math.max(opts.limit || 0, ...points.map((p) => p[1])) * 1.1 || 1;
  const x = (t) => pad + ((t - t0) / (now - t0)) * (w - 2 * pad);
  const y = (v) => h - pad - (v / max) * (h - 2 * pad);
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
  let svg = `<svg class="${cls}"${attrs} width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">`;
  svg += `<line class="axis" x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}"/>`;
  if (opts.limit) svg += `<line class="quota" x1="${pad}" x2="${w - pad}" y1="${y(opts.limit)}" y2="${y(opts.limit)}"><title>quota ${esc(opts.fmt ? opts.fmt(opts.limit) : opts.limit)}</title></line>`;
  svg += `<path class="line" d="${path}"/>`;
  for (const p of points) {
    const over = opts.limit && p[1] > opts.limit;
    const label = opts.fmt ? opts.fmt(p[1]) : p[1];
    svg += `<circle class="point${over ? " over" : ""}" cx="${x(p[0]).toFixed(1)}" cy="${y(p[1]).toFixed(1)}" r="${over ? 3 : 2}"><title>${esc(new Date(p[0] * 1000).toLocaleTimeString())} ${esc(label)}${over ? (p[1] > 2 * opts.limit ? " R15" : " R14") : ""}</title></circle>`;
  }
  return svg + "</svg>";
}

function empty(text) {
  return `<p class="empty">${esc(text)}</p>`;
}

function drawFormation(state) {
  const rows = state.formation.map((d) => {
    const badge = d.error ? `<span class="error-badge" title="memory over quota">${d.error}</span>` : "";
    const reload = d.lastReload ? (d.lastReload.result === "error" ? `<span class="bad">error</span>` : ago(state.now - d.lastReload.at) + " ago") : "none yet";
    return `<tr data-dyno="${esc(d.name)}" data-memory="${d.memory ?? 0}" data-error="${esc(d.error || "")}">
      <td>${esc(d.name)}</td><td class="state-${esc(d.state)}">${esc(d.state)}</td>
      <td class="num">${num(d.restarts)}</td><td>${ago(d.uptimeSeconds)}</td>
      <td title="config hash"><code>${esc((d.configHash || "–").slice(0, 12))}</code></td><td>${reload}</td>
      <td class="memory num">${mb(d.memory)} / ${mb(d.quota)}${badge}</td>
      <td>${chart(d.memorySeries, { limit: d.quota, now: state.now, window: state.windowSeconds, fmt: mb, cls: "memory-chart", data: { dyno: d.name } })}</td>
      <td class="num">${d.cpu == null ? "–" : num(d.cpu, 1) + "%"}</td><td class="num">${num(d.load, 2)}</td></tr>`;
  });
  $("#formation tbody").innerHTML = rows.join("") || `<tr><td colspan="10">${empty("No dyno has reported yet.")}</td></tr>`;
}

function drawRouter(state) {
  const buckets = state.router.buckets;
  if (!buckets.length) {
    $("#router .body").innerHTML = empty("No router data yet: requests/s, service-time percentiles, status classes and H-errors appear here once the router feeds the console.");
    return;
  }
  const rate = buckets.map((b) => [b.slot, b.rate]);
  const p95 = buckets.filter((b) => b.p95 != null).map((b) => [b.slot, b.p95]);
  const total = buckets.reduce((a, b) => a.map((n, i) => n + b.classes[i]), [0, 0, 0, 0, 0]);
  const codes = {};
  buckets.forEach((b) => Object.entries(b.codes).forEach(([c, n]) => (codes[c] = (codes[c] || 0) + n)));
  const last = buckets[buckets.length - 1];
  $("#router .body").innerHTML = `<div class="columns">
    <div><h3>requests/s</h3>${chart(rate, { now: state.now, cls: "router-rate", fmt: (v) => v.toFixed(1) + "/s" })}</div>
    <div><h3>p95 service time</h3>${chart(p95, { now: state.now, cls: "router-p95", fmt: (v) => v.toFixed(0) + " ms" })}</div></div>
    <p>last 10 s: p50 ${num(last.p50)} ms · p95 ${num(last.p95)} ms · p99 ${num(last.p99)} ms</p>
    <p>status classes: ${total.map((n, i) => `${i + 1}xx ${n}`).join(" · ")}</p>
    <p>H-errors: ${Object.entries(codes).map(([c, n]) => `<span class="bad">${esc(c)}</span> ${n}`).join(" · ") || "none"}</p>`;
}

function drawServices(state) {
  const rows = state.services.map((s) => `<tr data-service="${esc(s.service)}" data-resource="${esc(s.resource)}">
    <td>${esc(s.service)}</td><td>${esc(s.operation)}</td><td>${esc(s.resource)}</td>
    <td class="num hits">${num(s.hits)}</td><td class="num">${num(s.rate, 2)}</td>
    <td class="num ${s.errors > 0 ? "bad" : ""}">${num(s.errors)}</td>
    <td class="num">${secs(s.p50)}</td><td class="num">${secs(s.p95)}</td><td class="num">${secs(s.p99)}</td>
    <td>${chart(s.hitsSeries, { now: state.now, width: 160, height: 28, cls: "hits-chart" })}</td></tr>`);
  $("#services tbody").innerHTML = rows.join("") || `<tr><td colspan="10">${empty("No APM stats yet: they arrive 20–30 s after the first traced request.")}</td></tr>`;
}

function traceRows(list) {
  return list.map((t) => `<tr class="clickable${t.id === selectedTrace ? " selected" : ""}" data-trace="${esc(t.id)}">
    <td>${esc(t.service)}</td><td>${esc(t.resource)}</td><td class="num">${ms(t.duration)}</td>
    <td>${t.error ? '<span class="bad">error</span>' : esc(t.status || "")}</td><td class="num">${t.spans} spans</td><td>${esc(t.dynos.join(","))}</td></tr>`).join("");
}

function drawTraces(state) {
  const select = $('#trace-filter select[name="service"]');
  const known = [...select.options].map((o) => o.value);
  for (const s of state.traces.services) if (!known.includes(s)) select.add(new Option(s, s));
  $("#latest tbody").innerHTML = traceRows(state.traces.latest) || `<tr><td>${empty("No trace matches.")}</td></tr>`;
  $("#slowest tbody").innerHTML = traceRows(state.traces.slowest) || `<tr><td>${empty("No trace matches.")}</td></tr>`;
}

async function showTrace(id) {
  selectedTrace = id;
  const res = await fetch("/api/trace?id=" + encodeURIComponent(id));
  if (!res.ok) {
    $("#waterfall").innerHTML = empty("That trace has left the window.");
    return;
  }
  const trace = await res.json();
  const spans = trace.spans;
  const t0 = Math.min(...spans.map((s) => s.start));
  const t1 = Math.max(...spans.map((s) => s.start + s.duration));
  const total = Math.max(t1 - t0, 1);
  const depth = {};
  const byId = Object.fromEntries(spans.map((s) => [s.span_id, s]));
  const depthOf = (s, n = 0) => (n > 50 || !byId[s.parent_id] ? 0 : 1 + depthOf(byId[s.parent_id], n + 1));
  spans.forEach((s) => (depth[s.span_id] = depthOf(s)));
  let html = `<h3>trace ${esc(trace.summary.id)} · ${esc(trace.summary.resource)} · ${ms(trace.summary.duration)}</h3>`;
  for (const s of spans) {
    const left = ((s.start - t0) / total) * 100, width = (s.duration / total) * 100;
    const tags = Object.entries(s.meta).filter(([k]) => k !== "error.stack").map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("");
    const stack = s.meta["error.stack"] ? `<pre class="stack">${esc(s.meta["error.stack"])}</pre>` : "";
    const message = s.meta["error.message"] ? `<p class="bad">${esc(s.meta["error.type"] || "error")}: ${esc(s.meta["error.message"])}</p>` : "";
    html += `<div class="span-row${s.error ? " error" : ""}" data-span-id="${esc(s.span_id)}" data-parent-id="${esc(s.parent_id)}">
      <div class="label" style="padding-left:${depth[s.span_id] * 12}px" title="${esc(s.name)} ${esc(s.resource)}">${esc(s.service)} · ${esc(s.name)} <small>${esc(s.resource)}</small></div>
      <div class="track"><div class="bar" style="left:${left}%;width:${width}%" title="${ms(s.duration)}"></div></div></div>
      <div class="span-detail" data-detail-of="${esc(s.span_id)}">${message}${stack}<p>span ${esc(s.span_id)} · ${ms(s.duration)} · type ${esc(s.type)} · <a href="#logs" data-logs-of="${esc(s.trace_id)}">its trace's logs</a></p><table>${tags}</table></div>`;
  }
  $("#waterfall").innerHTML = html;
  if (lastState) drawTraces(lastState);
}

function drawLogs(state) {
  const f = Object.fromEntries(new FormData($("#log-filter")));
  const lines = state.logs.filter(({ dyno, log }) =>
    (!f.dyno || dyno === f.dyno) && (!f.status || String(log.status ?? "") === f.status) &&
    (!f.text || log.message.includes(f.text)) && (!f.trace || log.trace_id === f.trace));
  if (!state.logs.length) {
    $("#logs .body").innerHTML = empty("No log records yet: the app's lines appear here, linked to their traces, once the sidecars send log records.");
    return;
  }
  $("#logs .body").innerHTML = lines.map(({ dyno, log }) => {
    const link = log.trace_id ? ` <a href="#" data-trace-link="${esc(log.trace_id)}">trace</a>` : "";
    return `<div class="log-line">${esc(new Date(log.timestamp_ms).toLocaleTimeString())} ${esc(dyno)} ${esc(log.message)}${link}</div>`;
  }).join("") || empty("No line matches.");
}

function drawChecks(state) {
  const rows = state.checks.map((c) => `<tr><td>${esc(c.dyno)}</td><td>${esc(c.name)}</td>
    <td class="${c.status === 0 ? "ok-badge" : "bad"}">${["OK", "WARNING", "CRITICAL", "UNKNOWN"][c.status] || c.status}</td>
    <td>${esc(c.message || "")}</td><td>${c.at ? ago(state.now - c.at) + " ago" : "–"}</td></tr>`);
  $("#checks .body").innerHTML = rows.length ? `<table><thead><tr><th>dyno</th><th>check</th><th>status</th><th>last error</th><th>last run</th></tr></thead><tbody>${rows.join("")}</tbody></table>` : empty("No integration check runs in this formation.");
}

function drawSinks(state) {
  const count = (c) => c.points + c.sketches + c.spans + c.events + c.logs + c.telemetry;
  const rows = state.sinks.map((s) => `<tr><td>${esc(s.dyno)}</td><td>${esc(s.name)}</td>
    <td class="num">${count(s.sent)}</td><td class="num ${count(s.dropped) ? "bad" : ""}">${count(s.dropped)}</td>
    <td class="num">${s.retries}</td><td class="num">${s.errors}</td><td>${esc(s.lastError || "")}</td></tr>`);
  $("#sinks .body").innerHTML = rows.length ? `<table><thead><tr><th>dyno</th><th>sink</th><th>delivered</th><th>dropped</th><th>retries</th><th>errors</th><th>last error</th></tr></thead><tbody>${rows.join("")}</tbody></table>` : empty("Waiting for the sidecars' status.");
}

function draw(state) {
  lastState = state;
  $("#clock").textContent = new Date(state.now * 1000).toLocaleTimeString();
  $("#window-memory").textContent = `window ${mb(state.memory.bytes)} of ${mb(state.memory.boundBytes)} · ${state.memory.traces} traces`;
  drawFormation(state);
  drawRouter(state);
  drawServices(state);
  drawTraces(state);
  drawLogs(state);
  drawChecks(state);
  drawSinks(state);
}

async function poll() {
  try {
    const query = new URLSearchParams(new FormData($("#trace-filter"))).toString();
    const res = await fetch("/api/state?" + query);
    draw(await res.json());
    $("#connection").textContent = "live";
    $("#connection").className = "ok";
  } catch (err) {
    $("#connection").textContent = "disconnected";
    $("#connection").className = "bad";
  }
  setTimeout(poll, POLL_MS);
}

document.addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-trace]");
  if (row) return showTrace(row.dataset.trace);
  const link = e.target.closest("[data-trace-link]");
  if (link) { e.preventDefault(); return showTrace(link.dataset.traceLink); }
  const logs = e.target.closest("[data-logs-of]");
  if (logs) {
    $('#log-filter input[name="trace"]').value = logs.dataset.logsOf;
    return lastState && drawLogs(lastState);
  }
  const span = e.target.closest(".span-row");
  if (span) $(`.span-detail[data-detail-of="${span.dataset.spanId}"]`).classList.toggle("open");
});
$("#trace-filter").addEventListener("input", () => lastState && fetch("/api/state?" + new URLSearchParams(new FormData($("#trace-filter")))).then((r) => r.json()).then(draw));
$("#log-filter").addEventListener("input", () => lastState && drawLogs(lastState));
poll();
