// The dashboard: polls ../v1/stats every second and redraws. Every value
// from the node is put in the page as text (never as HTML): keys and
// routes come from clients.
"use strict";

const POLL_MS = 1000;
const RATE_WINDOW = 10; // seconds averaged for the figures
const CHART_SECONDS = 180; // of the node's 300 seconds of history
const charts = new Map(); // node name -> uPlot
let topTab = "cluster";
let last = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function rows(id, list, row) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...list.map(row));
}

function pill(text, cls) { return el("span", { class: "pill " + (cls || text) }, text); }

function fromNow(epoch, now) {
  const s = Math.round(epoch - now / 1000);
  if (s <= 0) return "now";
  return s >= 120 ? "in " + Math.round(s / 60) + " min" : "in " + s + " s";
}

function fmtRate(x) { return x >= 100 ? x.toFixed(0) : x.toFixed(1); }
function ms(x) { return x ? x.toFixed(2) + " ms" : "–"; }

// rate sums one field over the nodes' last complete RATE_WINDOW seconds.
function rate(nodes, field) {
  let sum = 0;
  for (const n of nodes) {
    const h = n.history || [];
    for (const s of h.slice(Math.max(0, h.length - 1 - RATE_WINDOW), h.length - 1)) sum += s[field];
  }
  return sum / RATE_WINDOW;
}

function renderFigures(st) {
  const alive = st.members.filter(m => m.state === "alive").length;
  document.getElementById("alive").textContent = alive + " / " + st.members.length;
  document.getElementById("allowed-rate").textContent = fmtRate(rate(st.nodes, "allowed"));
  document.getElementById("denied-rate").textContent = fmtRate(rate(st.nodes, "denied"));
  document.getElementById("shadow-rate").textContent = fmtRate(rate(st.nodes, "shadow"));
}

// renderWarnings shows what the nodes report wrong while they serve, such
// as a gRPC service refusing every call for its token.
function renderWarnings(st) {
  const list = [];
  for (const n of st.nodes) for (const w of n.warnings || []) list.push(el("li", {}, n.name + ": " + w));
  const box = document.getElementById("warnings");
  box.replaceChildren(...list);
  box.hidden = list.length === 0;
}

function renderMembers(st) {
  const ms = [...st.members].sort((a, b) => a.name.localeCompare(b.name));
  rows("members", ms, m => {
    const bar = el("i");
    bar.style.width = (100 * m.ring_share).toFixed(1) + "%"; // CSSOM: no inline style needed
    const share = el("span", { class: "share" }, bar);
    const tr = el("tr", { "data-name": m.name, class: m.self ? "self" : "" },
      el("td", {}, m.name), el("td", {}, pill(m.state)),
      el("td", {}, share, (100 * m.ring_share).toFixed(1) + " %"), el("td", {}, m.http_addr || "–"));
    return tr;
  });
}

// timeLabels names the x axis' ticks by the time of day only: minutes as
// 05:58, the ticks between as :30. uPlot's default puts the date under the
// first tick, where it runs into the next one's label.
function timeLabels(u, splits) {
  const two = n => String(n).padStart(2, "0");
  return splits.map(t => {
    const d = new Date(t * 1000);
    return d.getSeconds() === 0 ? two(d.getHours()) + ":" + two(d.getMinutes()) : ":" + two(d.getSeconds());
  });
}

function chartOpts(width) {
  return {
    width, height: 160, legend: { show: true, live: false },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    axes: [{ values: timeLabels }, { size: 40 }],
    series: [
      {},
      { label: "allowed", stroke: "#1f9d55", fill: "rgba(31,157,85,.12)", width: 1.5 },
      { label: "denied", stroke: "#d64545", fill: "rgba(214,69,69,.12)", width: 1.5 },
      { label: "shadow", stroke: "#d08a12", width: 1.5, dash: [4, 3] },
    ],
  };
}

function renderCharts(st) {
  const box = document.getElementById("charts");
  const names = st.nodes.map(n => n.name);
  for (const [name, u] of charts) {
    if (!names.includes(name)) { u.destroy(); u.root.parentElement.remove(); charts.delete(name); }
  }
  for (const n of st.nodes) {
    const h = (n.history || []).slice(-CHART_SECONDS);
    const data = [h.map(s => s.t), h.map(s => s.allowed), h.map(s => s.denied), h.map(s => s.shadow)];
    let u = charts.get(n.name);
    if (!u) {
      const wrap = el("div", { class: "chart", "data-node": n.name }, el("h3", {}, n.name));
      box.append(wrap);
      u = new uPlot(chartOpts(Math.max(280, wrap.clientWidth)), data, wrap);
      charts.set(n.name, u);
    } else {
      u.setData(data);
    }
    u.root.parentElement.querySelector("h3").textContent = n.name + (n.error ? " — no answer: " + n.error : "");
  }
}

function renderTop(st) {
  const tabs = document.getElementById("top-tabs");
  const names = ["cluster", ...st.nodes.map(n => n.name)];
  if (!names.includes(topTab)) topTab = "cluster";
  tabs.replaceChildren(...names.map(name => {
    const b = el("button", { type: "button", class: name === topTab ? "on" : "" }, name === "cluster" ? "cluster-wide" : name);
    b.onclick = () => { topTab = name; render(last); };
    return b;
  }));
  const list = topTab === "cluster" ? st.top_denied : (st.nodes.find(n => n.name === topTab) || {}).top_denied;
  rows("top", list || [], k => el("tr", { "data-key": k.key },
    el("td", { class: "key" }, k.key), el("td", {}, k.err ? k.count + " ±" + k.err : k.count),
    el("td", {}, k.limit || "–"), el("td", {}, k.route || "–"), el("td", {}, fromNow(k.reset, st.time))));
}

function renderNodes(st) {
  rows("nodes", st.nodes, n => {
    const m = n.metrics || { checks: {} }, c = m.checks || {};
    if (n.error) return el("tr", {}, el("td", {}, n.name), el("td", { colspan: 7 }, pill("no answer", "down"), " " + n.error));
    const r = m.replication;
    return el("tr", {}, el("td", {}, n.name),
      el("td", {}, (c.local || 0) + " / " + (c.forwarded || 0) + " / " + (c.served || 0)),
      el("td", {}, ms(m.forward_p50_ms)), el("td", {}, ms(m.forward_p99_ms)),
      el("td", {}, m.fallbacks), el("td", {}, m.failovers),
      el("td", {}, m.handoff_sent + " / " + m.handoff_received + " / " + m.handoff_kept),
      el("td", {}, r ? (r.sent || 0) + " / " + (r.received || 0) + " / " + (r.promoted || 0) : "–"));
  });
}

function renderShadow(st) {
  const sum = new Map();
  for (const n of st.nodes) for (const s of n.shadow || []) {
    const k = s.route + "\u0000" + s.limit;
    sum.set(k, { route: s.route, limit: s.limit, count: (sum.has(k) ? sum.get(k).count : 0) + s.count });
  }
  const list = [...sum.values()].sort((a, b) => b.count - a.count);
  rows("shadow", list, s => el("tr", {}, el("td", {}, s.route), el("td", {}, s.limit || "–"), el("td", {}, s.count)));
}

function renderPolicy(st) {
  const p = (st.policies || [])[0];
  // A node that serves no HTTP routes (a gateway's, --demo=false) has no
  // policy: the panel is hidden rather than empty.
  document.getElementById("routes-card").hidden = !p;
  if (!p) return;
  const head = document.getElementById("policy-head");
  const parts = [];
  if (p.default) parts.push("default " + p.default);
  if (p.application) parts.push("application " + p.application);
  if (p.strategy) parts.push("strategy " + p.strategy);
  for (const s of p.shared || []) parts.push("shared " + s.scope + ": " + s.limits);
  if (p.shadow) parts.push("every limit is a dry run (shadow)");
  head.textContent = parts.join(" · ");
  rows("routes", p.routes, r => {
    const flags = [];
    if (r.exempt) flags.push(pill("exempt", "flag"));
    if (r.shadow) flags.push(pill("shadow", "flag"));
    if (r.count_when) flags.push(pill("counts " + r.count_when.join(", "), "flag"));
    if (r.cost) flags.push(pill("cost " + r.cost, "flag"));
    for (const f of r.funcs || []) flags.push(pill(f + "()", "flag"));
    let limits = r.exempt ? "–" : r.limits || (r.shared ? "shared: " + r.shared.join(", ") : "default");
    if (r.tiers) limits += " · tiers " + Object.entries(r.tiers).map(([t, l]) => t + ": " + (l || "unlimited")).join(", ");
    return el("tr", {}, el("td", {}, (r.method ? r.method + " " : "") + r.path), el("td", {}, limits), el("td", {}, ...flags));
  });
}

function render(st) {
  if (!st) return;
  document.getElementById("viewing").textContent = "node " + st.node + " · " + new Date(st.time).toLocaleTimeString();
  renderFigures(st);
  renderWarnings(st);
  renderMembers(st);
  renderCharts(st);
  renderTop(st);
  renderNodes(st);
  renderShadow(st);
  renderPolicy(st);
}

// A node with --api-token wants its token on /v1/stats: the page asks for
// it once and keeps it for the tab's session only.
const TOKEN_KEY = "ratemesh-api-token";

function askToken() {
  const form = document.getElementById("token-form");
  if (!form.hidden) return;
  form.hidden = false;
  form.onsubmit = ev => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
    form.hidden = true;
  };
}

// The gateway config (a node with --rls-config) changes only on reload:
// it is read every GATEWAY_EVERY polls.
const GATEWAY_EVERY = 10;
let polls = 0;

// pollGateway lists the rate limit service's rules, one a row: the
// descriptor's path (domain.key_value.key, as the top denied keys and the
// shadow panel name it), its limit and its flags.
async function pollGateway(headers) {
  const r = await fetch("../rlconfig?format=json", { cache: "no-store", headers });
  const card = document.getElementById("gateway-card");
  card.hidden = !r.ok;
  if (!r.ok) return;
  rows("gateway", await r.json(), g => {
    const flags = [];
    if (g.shadow_mode) flags.push(pill("shadow", "flag"));
    if (g.quota_mode) flags.push(pill("quota", "flag"));
    if (g.name) flags.push(pill("name " + g.name, "flag"));
    if (g.replaces) flags.push(pill("replaces " + g.replaces.join(", "), "flag"));
    return el("tr", { "data-path": g.path }, el("td", { class: "key" }, g.path), el("td", {}, g.limit), el("td", {}, ...flags));
  });
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const r = await fetch("../v1/stats", { cache: "no-store", headers });
    if (r.status === 401) askToken();
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    last = await r.json();
    render(last);
    if (polls++ % GATEWAY_EVERY === 0) await pollGateway(headers);
    status.textContent = "live"; status.className = "pill live";
  } catch (e) {
    status.textContent = "stale: " + e.message; status.className = "pill stale";
  }
  setTimeout(poll, POLL_MS);
}

window.addEventListener("resize", () => {
  for (const u of charts.values()) u.setSize({ width: Math.max(280, u.root.parentElement.clientWidth), height: 160 });
});
poll();
