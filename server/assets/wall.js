// The wall page: draws the zones from /api/v1/zones (no map tiles), follows /api/v1/stream
// (server-sent events; the browser resumes with Last-Event-ID), never polls.
"use strict";

const HOUR = 3600 * 1000;
const LEVEL_NAMES = { 0: "no data", 1: "low", 2: "moderate", 3: "high", 4: "very high" };
const S = {
  token: null, role: null, clock: null, hour: null, from: null, to: null,
  zones: [], rows: new Map(), selected: null, series: null, source: null,
};

// The token: from ?token=… (then kept in localStorage), or typed in the header's field.
(function initToken() {
  const q = new URLSearchParams(location.search).get("token");
  if (q !== null) localStorage.setItem("vigie-token", q);
  S.token = localStorage.getItem("vigie-token") || null;
})();

function headers() { return S.token ? { Authorization: "Bearer " + S.token } : {}; }

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) } });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) { const e = new Error((body && body.error) || r.statusText); e.status = r.status; throw e; }
  return body;
}

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const svg = ["svg", "g", "path", "text", "polyline", "line", "rect", "pattern", "defs", "title"].includes(tag);
  const n = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") n.textContent = v; else if (k === "onclick") n.onclick = v; else n.setAttribute(k, v);
  }
  for (const k of kids) n.append(k);
  return n;
};
const hourMs = (iso) => Date.parse(iso);
const fmtHour = (ms) => new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC";
const fmt = (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));

// ---- the map -----------------------------------------------------------------------------
// An equirectangular projection scaled by cos(latitude) at the centre, fitted to the box.
function project(features, width, height, pad) {
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const f of features) for (const poly of rings(f)) for (const ring of poly) for (const [x, y] of ring) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const k = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
  const s = Math.min((width - 2 * pad) / ((x1 - x0) * k || 1), (height - 2 * pad) / ((y1 - y0) || 1));
  const ox = (width - (x1 - x0) * k * s) / 2, oy = (height - (y1 - y0) * s) / 2;
  return ([x, y]) => [ox + (x - x0) * k * s, oy + (y1 - y) * s];
}
function rings(f) {
  const g = f.geometry;
  if (!g) return [];
  return g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
}
// The label point: the area-weighted centroid of the zone's largest outer ring.
function labelPoint(pts) {
  let a = 0, cx = 0, cy = 0;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const c = pts[j][0] * pts[i][1] - pts[i][0] * pts[j][1];
    a += c; cx += (pts[j][0] + pts[i][0]) * c; cy += (pts[j][1] + pts[i][1]) * c;
  }
  return a ? [cx / (3 * a), cy / (3 * a), Math.abs(a / 2)] : [pts[0][0], pts[0][1], 0];
}

// Zones without a polygon (a configuration may give none) are drawn as tiles in a grid.
function withTiles(features) {
  if (features.every((f) => f.geometry)) return features;
  const cols = Math.ceil(Math.sqrt(features.length * 1.4)), gap = 0.06;
  return features.map((f, i) => {
    const x = i % cols, y = Math.floor(i / cols);
    const [x0, y0, x1, y1] = [x + gap, -(y + 1 - gap), x + 1 - gap, -(y + gap)];
    const ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]];
    return { ...f, geometry: { type: "Polygon", coordinates: [ring] } };
  });
}

function drawMap(features) {
  features = withTiles(features);
  const svg = $("map");
  const W = 1000, H = 760;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.textContent = "";
  const defs = el("defs");
  // Very high risk also carries stripes: colour is never the only sign.
  const pat = el("pattern", { id: "stripes", width: 10, height: 10, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  pat.append(el("rect", { width: 10, height: 10, fill: "var(--l4)" }), el("line", { x1: 0, y1: 0, x2: 0, y2: 10, stroke: "#000", "stroke-width": 3, "stroke-opacity": 0.35 }));
  defs.append(pat);
  svg.append(defs);
  const p = project(features, W, H, 12);
  const labels = el("g");
  // Names that all begin alike ("Marseille 1er", "Marseille 2e"…) are written without it.
  const names = features.map((f) => f.properties.name);
  const first = names[0].split(" ")[0] + " ";
  const common = names.length > 1 && names.every((n) => n.startsWith(first) && n.length > first.length) ? first.length : 0;
  S.zones = [];
  for (const f of features) {
    const id = f.properties.id;
    const g = el("g", { class: "zone", "data-zone": id, "data-name": f.properties.name });
    let d = "", best = null;
    for (const poly of rings(f)) {
      poly.forEach((ring, i) => {
        const pts = ring.map(p);
        d += "M" + pts.map((q) => q[0].toFixed(1) + "," + q[1].toFixed(1)).join("L") + "Z";
        if (i === 0) { const lp = labelPoint(pts); if (!best || lp[2] > best[2]) best = lp; }
      });
    }
    const path = el("path", { d });
    g.append(path);
    g.onclick = () => selectZone(id);
    svg.append(g);
    const lg = el("g", { class: "zone", "data-label": id });
    const [lx, ly, area] = best || [0, 0, 0];
    // Type as large as the zone allows, never too small to read across the room.
    const side = Math.sqrt(area);
    const big = Math.max(24, Math.min(48, side / 3.2)), small = Math.max(13, Math.min(20, side / 7));
    const level = el("text", { class: "level", x: lx, y: ly + big * 0.2, style: `font-size:${big.toFixed(0)}px` });
    // A long name goes on two lines, cut at the space or hyphen nearest its middle.
    const full = f.properties.name.slice(common);
    let lines = [full];
    if (full.length > 12) {
      const cuts = [...full.matchAll(/[ -]/g)].map((m) => m.index);
      if (cuts.length) {
        const cut = cuts.reduce((a, b) => (Math.abs(b - full.length / 2) < Math.abs(a - full.length / 2) ? b : a));
        lines = [full.slice(0, full[cut] === "-" ? cut + 1 : cut), full.slice(cut + 1)];
      }
    }
    const name = el("text", { class: "name", x: lx, y: ly + big * 0.2 + small * 1.1, style: `font-size:${small.toFixed(0)}px`, text: lines[0] });
    lg.append(level, name);
    if (lines[1]) lg.append(el("text", { class: "name", x: lx, y: ly + big * 0.2 + small * 2.2, style: `font-size:${small.toFixed(0)}px`, text: lines[1] }));
    labels.append(lg);
    S.zones.push({ id, name: f.properties.name, g, path, level });
  }
  svg.append(labels); // labels above every zone
  const legend = $("legend");
  legend.textContent = "";
  for (const l of [1, 2, 3, 4]) legend.append(el("span", {}, el("i", { class: "lv" + l, text: l }), LEVEL_NAMES[l]));
}

function paintZone(z) {
  const row = S.rows.get(z.id);
  const level = row ? row.risk_level : 0;
  const fill = level === 4 ? "url(#stripes)" : `var(--${level ? "l" + level : "none"})`;
  z.path.setAttribute("fill", fill);
  z.g.setAttribute("data-level", level);
  z.g.classList.toggle("selected", S.selected === z.id);
  z.level.textContent = level ? level : "–";
  z.path.replaceChildren(el("title", { text: `${z.name}: level ${level} (${LEVEL_NAMES[level]})${row ? ", risk " + fmt(row.risk_score) : ""}` }));
}
function paintAll() { S.zones.forEach(paintZone); }

// ---- the hour and the slider ---------------------------------------------------------------
function setHorizon(clock, from, to) {
  S.clock = clock; S.from = from; S.to = to;
  const sl = $("slider");
  sl.min = 0; sl.max = Math.round((to - from) / HOUR);
  if (S.hour === null || S.hour < from || S.hour > to) S.hour = clock;
  sl.value = Math.round((S.hour - from) / HOUR);
  showHour();
}
function showHour() {
  $("hour-label").textContent = fmtHour(S.hour);
  const dh = Math.round((S.hour - S.clock) / HOUR);
  const w = $("hour-when");
  w.textContent = dh === 0 ? "now" : dh > 0 ? `forecast +${dh} h` : `past ${dh} h`;
  w.className = dh < 0 ? "past" : "";
  w.setAttribute("data-offset", dh);
}
async function loadHour() {
  const body = await api("/api/v1/indicators?hour=" + encodeURIComponent(new Date(S.hour).toISOString()));
  S.rows = new Map(body.indicators.map((r) => [r.zone, r]));
  paintAll();
  if (S.selected) { drawChart(); loadExplain(); }
}
let sliderTimer = null;
$("slider").addEventListener("input", () => {
  S.hour = S.from + Number($("slider").value) * HOUR;
  showHour();
  clearTimeout(sliderTimer);
  sliderTimer = setTimeout(() => loadHour().catch(showError), 60);
});
$("now").onclick = () => { S.hour = S.clock; setHorizon(S.clock, S.from, S.to); loadHour().catch(showError); };

// ---- the zone panel ------------------------------------------------------------------------
async function selectZone(id) {
  S.selected = id;
  paintAll();
  const q = (field) => api(`/api/v1/indicators/range?zone=${encodeURIComponent(id)}&field=${field}&agg=last`);
  const [risk, prot] = await Promise.all([q("risk_score"), q("protection_rate")]);
  S.series = { risk: risk.points, prot: prot.points };
  renderZone();
  await loadExplain();
}
function renderZone() {
  const p = $("zone-panel");
  const z = S.zones.find((z) => z.id === S.selected);
  if (!z) return;
  const row = S.rows.get(z.id);
  const lv = row ? row.risk_level : 0;
  p.replaceChildren(
    el("h2", { text: "Zone" }),
    el("div", { class: "big", id: "zone-name" }, `${z.name} `, el("span", { class: "levelbox lv" + lv, text: lv || "–" })),
    el("p", { id: "zone-figures", text: row ? `risk ${fmt(row.risk_score)} · level ${lv} (${LEVEL_NAMES[lv]}) · protection ${fmt(row.protection_rate * 100, 0)} % (${row.deployed_agents}/${row.required_agents} agents) · ${row.trend}` : "no figures at this hour" }),
    el("svg", { id: "chart", viewBox: "0 0 600 160", preserveAspectRatio: "none" }),
    el("div", { id: "explain" }),
  );
  drawChart();
}
function drawChart() {
  const svg = $("chart");
  if (!svg || !S.series) return;
  svg.textContent = "";
  const W = 600, H = 160, x = (t) => ((t - S.from) / (S.to - S.from)) * W;
  const line = (pts, f, cls) => el("polyline", { class: cls, points: pts.map((q) => `${x(hourMs(q.time)).toFixed(1)},${(H - 14 - f(q.value) * (H - 24)).toFixed(1)}`).join(" ") });
  svg.append(
    line(S.series.risk, (v) => v / 100, "risk"),
    line(S.series.prot, (v) => Math.min(1, v), "prot"),
    el("line", { class: "now", x1: x(S.clock), x2: x(S.clock), y1: 0, y2: H }),
    el("line", { class: "cursor", x1: x(S.hour), x2: x(S.hour), y1: 0, y2: H }),
    el("text", { x: 4, y: 12, text: "— risk score (0–100)   - - protection rate (0–100 %)" }),
    el("text", { x: 4, y: H - 2, text: "−7 d" }), el("text", { x: x(S.clock) + 3, y: H - 2, text: "now" }), el("text", { x: W - 34, y: H - 2, text: "+30 d" }),
  );
}
async function loadExplain() {
  if (!S.selected) return;
  const box = $("explain");
  if (!box) return;
  let e;
  try {
    e = await api(`/api/v1/explain?zone=${encodeURIComponent(S.selected)}&hour=${encodeURIComponent(new Date(S.hour).toISOString())}`);
  } catch (err) { box.replaceChildren(el("p", { class: "hint", text: "why: " + err.message })); return; }
  const f = e.formula;
  const t = el("table", { id: "contributions" }, el("tr", {}, el("th", { text: `Why, at ${fmtHour(S.hour)}` }), el("th", { text: "value" }), el("th", { text: "" })));
  const max = Math.max(1e-9, ...e.contributions.filter((c) => c.part === "base").map((c) => c.value * (c.weight || 1)));
  for (const c of e.contributions) {
    const w = c.part === "base" ? Math.round((c.value * (c.weight || 1)) / max * 100) : 0;
    t.append(el("tr", { "data-contribution": c.name, title: c.what },
      el("td", { text: c.name }), el("td", { class: "num", text: fmt(c.value, 2) }),
      el("td", {}, el("span", { class: "bar", style: `width:${w}px` }))));
  }
  box.replaceChildren(t, el("p", { class: "hint", text: `base ${fmt(f.base, 2)} × crowd ${fmt(f.crowd_factor, 2)} × weather ${fmt(f.weather_factor, 2)} × demonstration ${fmt(f.demonstration_factor, 2)} = raw ${fmt(f.raw, 2)} → risk ${fmt(f.risk_score)} (scale ${f.scale})` }));
}

// ---- alerts, clashes, feeds ------------------------------------------------------------------
async function loadAlerts() {
  const ul = $("alerts");
  let list;
  try { list = await api("/api/v1/alerts?state=active"); }
  catch (err) { ul.replaceChildren(el("li", { class: "hint", text: err.status === 404 ? "no alerting configured" : "alerts: " + err.message })); return; }
  $("alert-count").textContent = list.length ? `(${list.length})` : "";
  if (!list.length) { ul.replaceChildren(el("li", { class: "hint", text: "none" })); return; }
  ul.replaceChildren(...list.map((a) => {
    const li = el("li", { "data-alert": a.id, "data-state": a.state },
      el("span", { class: "sev-" + a.severity, text: a.severity.toUpperCase() }),
      el("span", { class: "msg", text: a.message }));
    if (a.acknowledged) li.append(el("span", { class: "acked", text: `acknowledged by ${a.acknowledged.by}` }));
    else li.append(el("button", { class: "ack", type: "button", text: "Acknowledge", onclick: () => ack(a.id) }));
    return li;
  }));
}
async function ack(id) {
  const st = $("ack-status");
  try {
    await api(`/api/v1/alerts/${encodeURIComponent(id)}/ack`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ comment: "acknowledged from the wall" }) });
    st.textContent = `alert ${id} acknowledged`; st.className = "done";
    await loadAlerts();
  } catch (err) {
    st.textContent = `refused (${err.status}): ${err.message}`; st.className = "refused";
  }
}
async function loadClashes() {
  const list = await api("/api/v1/clashes");
  $("clash-count").textContent = list.length ? `(${list.length})` : "";
  $("clashes").replaceChildren(...(list.length ? list.map((c) => el("li", { "data-clash": c.zone },
    el("span", { class: "levelbox lv3", text: c.reason }),
    el("span", { class: "msg", text: `${c.name}: ${c.a} × ${c.b}, ${c.start.slice(0, 16).replace("T", " ")} → ${c.end.slice(0, 16).replace("T", " ")}` }))) : [el("li", { class: "hint", text: "none" })]));
}
function renderFeeds(h) {
  const t = $("feeds");
  t.replaceChildren(el("tr", {}, el("th", { text: "feed" }), el("th", { text: "records" }), el("th", { text: "latest event" }), el("th", { text: "" })));
  for (const f of h.feeds) {
    t.append(el("tr", { "data-feed": f.feed }, el("td", { text: f.feed }), el("td", { class: "num", text: f.accepted }),
      el("td", { text: f.last_event ? f.last_event.slice(0, 16).replace("T", " ") : "–" }),
      el("td", { class: "status-" + f.status, text: f.status })));
  }
  t.append(el("tr", {}, el("td", { text: "engine" }), el("td", { class: "num", text: h.engine.records }), el("td", { text: `queue ${h.engine.queued}` }), el("td", { text: `${h.engine.epochs} epochs` })));
}

// ---- live --------------------------------------------------------------------------------
function showError(err) { console.error(err); $("live").textContent = err.message; }

async function loadAll() {
  const me = await api("/api/v1/whoami");
  S.role = me.role;
  $("who").textContent = `${me.name} (${me.role})`;
  const zones = await api("/api/v1/zones");
  S.clock = hourMs(zones.clock);
  const ind = await api("/api/v1/indicators");
  setHorizon(hourMs(ind.clock), hourMs(ind.horizon.from), hourMs(ind.horizon.to));
  if (!S.zones.length) drawMap(zones.features);
  await loadHour();
  await Promise.all([loadAlerts(), loadClashes(), api("/api/v1/feeds").then(renderFeeds)]);
  if (S.selected) await selectZone(S.selected);
}

function connect() {
  if (S.source) S.source.close();
  const url = "/api/v1/stream" + (S.token ? "?access_token=" + encodeURIComponent(S.token) : "");
  const es = new EventSource(url);
  S.source = es;
  es.onopen = () => { $("live").textContent = "live"; $("live").className = "up"; };
  es.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "down"; };
  es.addEventListener("indicators", (m) => {
    const { rows } = JSON.parse(m.data);
    let selectedChanged = false;
    for (const r of rows) {
      const t = hourMs(r.hour);
      if (t === S.hour) { S.rows.set(r.zone, r); const z = S.zones.find((z) => z.id === r.zone); if (z) paintZone(z); }
      if (r.zone === S.selected && S.series) {
        for (const [k, f] of [["risk", "risk_score"], ["prot", "protection_rate"]]) {
          const p = S.series[k].find((q) => hourMs(q.time) === t);
          if (p) p.value = r[f]; else S.series[k].push({ time: r.hour, value: r[f] });
        }
        selectedChanged = true;
      }
    }
    if (selectedChanged) { S.series.risk.sort((a, b) => hourMs(a.time) - hourMs(b.time)); S.series.prot.sort((a, b) => hourMs(a.time) - hourMs(b.time)); renderZone(); loadExplain(); }
  });
  es.addEventListener("clashes", () => loadClashes().catch(showError));
  es.addEventListener("feeds", (m) => renderFeeds(JSON.parse(m.data)));
  es.addEventListener("alert", () => loadAlerts().catch(showError));
  // The clock moved, or this page missed more than the server keeps: read everything again.
  for (const kind of ["clock", "reset"]) es.addEventListener(kind, () => loadAll().catch(showError));
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  S.token = $("token").value.trim() || null;
  if (S.token) localStorage.setItem("vigie-token", S.token); else localStorage.removeItem("vigie-token");
  $("token").value = "";
  loadAll().then(connect).catch(showError);
});

loadAll().then(connect).catch((err) => { showError(err); connect(); });
