// The wall page: draws the zones from /api/v1/zones (no map tiles), follows /api/v1/stream
// (server-sent events; the browser resumes with Last-Event-ID), never polls. No inline script
// or style: everything is set from here, through the DOM.
"use strict";

const HOUR = 3600 * 1000;
const LEVEL_NAMES = { 0: "no data", 1: "low", 2: "moderate", 3: "high", 4: "very high" };
const FLUIDITY_NAMES = { 0: "no road data", 1: "fluid", 2: "dense", 3: "slow", 4: "jammed" };
const TREND_ARROWS = { rising: "↑", falling: "↓", stable: "→" };
const LAYERS = {
  risk: { field: "risk_level", trend: "trend", names: LEVEL_NAMES, title: "risk level" },
  criticality: { field: "criticality", trend: "trend", names: LEVEL_NAMES, title: "criticality" },
  fluidity: { field: "fluidity_level", trend: "fluidity_trend", names: FLUIDITY_NAMES, title: "traffic fluidity" },
};
const S = {
  token: null, role: null, clock: null, hour: null, from: null, to: null, tz: "UTC", model: 1,
  bands: { risk: [25, 50, 75], fluidity: [0.9, 0.75, 0.5] },
  zones: [], rows: new Map(), current: new Map(), selected: null, series: null, source: null,
  layer: "risk", dataAt: null, connected: false, changes: [], alerts: [], clashes: [],
  // The stream's id as of the last rows fetched (the stream resumes from it), the hour loads
  // under way, and the rows the stream sent meanwhile (applied again over the loaded rows).
  eventId: null, loading: 0, pending: [],
};

// ---- the token: from ?token=… (kept in localStorage, then taken out of the address) or typed.
(function initToken() {
  const params = new URLSearchParams(location.search);
  const q = params.get("token");
  if (q !== null) {
    localStorage.setItem("vigie-token", q);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }
  S.token = localStorage.getItem("vigie-token") || null;
  const mode = params.get("mode");
  if (mode === "wall" || (mode === null && localStorage.getItem("vigie-wall") === "1")) document.body.classList.add("wall");
})();

function headers() { return S.token ? { Authorization: "Bearer " + S.token } : {}; }

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) } });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) {
    const e = new Error((body && body.error) || r.statusText);
    e.status = r.status;
    if (r.status === 401) askToken(e.message);
    throw e;
  }
  return body;
}

// Loads of one kind (the alerts, the clashes, an explanation) may overlap when events come
// close together, and their answers come back in any order: only the last one asked is shown.
const STALE = Symbol("stale");
const asked = {};
async function latest(kind, path) {
  const n = (asked[kind] = (asked[kind] || 0) + 1);
  const body = await api(path);
  return n === asked[kind] ? body : STALE;
}

const $ = (id) => document.getElementById(id);
const SVG = ["svg", "g", "path", "text", "polyline", "line", "rect", "pattern", "defs", "title"];
const el = (tag, attrs = {}, ...kids) => {
  const n = SVG.includes(tag) ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") n.textContent = v;
    else if (k === "onclick") n.onclick = v;
    else if (k === "css") Object.assign(n.style, v);
    else if (v !== undefined && v !== null) n.setAttribute(k, v);
  }
  for (const k of kids) n.append(k);
  return n;
};
const hourMs = (iso) => Date.parse(iso);
const fmt = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
const zoneName = (id) => { const z = S.zones.find((z) => z.id === id); return z ? z.name : id; };

// ---- times: the city's time zone, UTC on hover ----------------------------------------------
function local(ms, opts) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: S.tz, hourCycle: "h23", ...opts }).format(new Date(ms));
}
const fmtHour = (ms) => local(ms, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
const fmtClock = (ms) => local(ms, { hour: "2-digit", minute: "2-digit" });
const utc = (ms) => new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC";
// A time element: the city's time, UTC on hover.
const timeEl = (ms, text) => el("time", { datetime: new Date(ms).toISOString(), title: utc(ms), text: text || fmtHour(ms) });
function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min ago`;
  return `${Math.round(s / 86400)} d ago`;
}

// ---- the map --------------------------------------------------------------------------------
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
    return { ...f, geometry: { type: "Polygon", coordinates: [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]] } };
  });
}
function pattern(id, colour, width, opacity) {
  const p = el("pattern", { id, width: 10, height: 10, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  if (colour) p.append(el("rect", { width: 10, height: 10, fill: colour }));
  p.append(el("line", { x1: 0, y1: 0, x2: 0, y2: 10, stroke: id === "doubt" ? "var(--l2)" : "#000", "stroke-width": width, "stroke-opacity": opacity }));
  return p;
}

function drawMap(features) {
  features = withTiles(features);
  const svg = $("map");
  const W = 1000, H = 760;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.textContent = "";
  // The worst level also carries stripes, doubtful hours a hatch: colour is never the only sign.
  svg.append(el("defs", {}, pattern("stripes", "var(--l4)", 3, 0.35), pattern("doubt", null, 2, 0.9)));
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
    const path = el("path", { d, class: "area" });
    const doubt = el("path", { d, class: "doubt" });
    const clash = el("path", { d, class: "clash" });
    g.append(path, doubt, clash);
    g.onclick = () => selectZone(id);
    svg.append(g);
    const lg = el("g", { class: "label", "data-label": id });
    const [lx, ly, area] = best || [0, 0, 0];
    // Type as large as the zone allows, never too small to read across the room.
    const side = Math.sqrt(area);
    const big = Math.max(24, Math.min(48, side / 3.2)), small = Math.max(13, Math.min(20, side / 7));
    const level = el("text", { class: "level", x: lx - big * 0.2, y: ly + big * 0.2, css: { fontSize: `${big.toFixed(0)}px` } });
    const trend = el("text", { class: "trend", x: lx + big * 0.45, y: ly + big * 0.2, css: { fontSize: `${(big * 0.7).toFixed(0)}px` } });
    const warn = el("text", { class: "warn", x: lx, y: ly - big * 0.75, css: { fontSize: `${(big * 0.6).toFixed(0)}px` } });
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
    const nameAt = (i) => ({ class: "name", x: lx, y: ly + big * 0.2 + small * (1.1 + 1.1 * i), css: { fontSize: `${small.toFixed(0)}px` } });
    lg.append(level, trend, warn, el("text", { ...nameAt(0), text: lines[0] }));
    if (lines[1]) lg.append(el("text", { ...nameAt(1), text: lines[1] }));
    const missing = el("text", { ...nameAt(lines.length), class: "missing" });
    lg.append(missing);
    labels.append(lg);
    S.zones.push({ id, name: f.properties.name, g, path, doubt, clash, level, trend, warn, missing, side });
  }
  svg.append(labels); // labels above every zone
}

function legend() {
  const box = $("legend");
  const L = LAYERS[S.layer];
  const [a, b, c] = S.layer === "fluidity" ? S.bands.fluidity : S.bands.risk;
  const bands = S.layer === "risk" ? [`score < ${a}`, `${a}–${b}`, `${b}–${c}`, `≥ ${c}`]
    : S.layer === "fluidity" ? [`≥ ${a}`, `${b}–${a}`, `${c}–${b}`, `< ${c}`]
    : ["risk 1–2, staffed", "risk 2–3 short of agents", "risk 3–4 short, or 4", "risk 4, short of agents"];
  box.replaceChildren(el("span", { text: L.title + ":" }),
    ...[1, 2, 3, 4].map((l, i) => el("span", { "data-band": l }, el("i", { class: "lv" + l, text: l }), `${L.names[l]} (${bands[i]})`)),
    el("span", {}, el("i", { class: "doubt", text: "?" }), "inputs missing: reduced or low confidence"),
    el("span", {}, el("i", { class: "clash", text: "⚠" }), "clash"));
}

// The level a zone shows in the current layer (0: none).
function levelOf(row, layer = S.layer) {
  if (!row) return 0;
  const v = row[LAYERS[layer].field];
  return v === null || v === undefined ? 0 : v;
}

function paintZone(z) {
  const row = S.rows.get(z.id);
  const level = levelOf(row);
  const fill = level === 4 ? "url(#stripes)" : `var(--${level ? "l" + level : "none"})`;
  z.path.setAttribute("fill", fill);
  z.g.setAttribute("data-level", level);
  z.g.classList.toggle("selected", S.selected === z.id);
  z.level.textContent = level ? level : "–";
  const trend = row && row[LAYERS[S.layer].trend];
  z.trend.textContent = trend ? TREND_ARROWS[trend] : "";
  z.g.setAttribute("data-trend", trend || "");
  // Reduced or low confidence: hatched, with the inputs that are missing.
  const doubtful = row && row.confidence && row.confidence !== "high";
  z.doubt.style.display = doubtful ? "" : "none";
  z.g.setAttribute("data-confidence", row && row.confidence ? row.confidence : "");
  z.g.setAttribute("data-missing", doubtful ? row.missing.join(",") : "");
  // Spelled out where the zone has room; a "?" (and the tooltip) where it has not.
  z.missing.textContent = doubtful ? (z.side > 120 ? `? no ${row.missing.join(", ")}` : "?") : "";
  // Clashes: a mark when one is active, a dashed outline when one overlaps the hour.
  const clashes = S.clashes.filter((c) => c.zone === z.id);
  const now = clashes.some((c) => hourMs(c.start) < S.hour + HOUR && hourMs(c.end) > S.hour);
  z.warn.textContent = clashes.length ? "⚠" : "";
  z.clash.style.display = now ? "" : "none";
  z.g.setAttribute("data-clash", now ? "now" : clashes.length ? "active" : "");
  const what = LAYERS[S.layer];
  const conf = doubtful ? `, ${row.confidence} confidence (no ${row.missing.join(", ")})` : "";
  z.path.replaceChildren(el("title", { text: `${z.name}: ${what.title} ${level} (${what.names[level]})${row ? ", risk score " + fmt(row.risk_score) : ""}${conf}` }));
}
function paintAll() { S.zones.forEach(paintZone); }
function pulse(z) {
  z.g.classList.remove("pulse");
  void z.g.getBBox(); // restart the animation
  z.g.classList.add("pulse");
  setTimeout(() => z.g.classList.remove("pulse"), 3200);
}

// ---- the layers, wall mode ------------------------------------------------------------------
for (const b of document.querySelectorAll("#layers button")) {
  b.onclick = () => {
    S.layer = b.dataset.layer;
    for (const o of document.querySelectorAll("#layers button")) o.classList.toggle("on", o === b);
    legend();
    paintAll();
    renderZone();
  };
}
$("wall-mode").onclick = () => {
  const on = document.body.classList.toggle("wall");
  localStorage.setItem("vigie-wall", on ? "1" : "0");
  $("wall-mode").setAttribute("aria-pressed", on);
  renderBanner();
};

// ---- the hour and the slider ----------------------------------------------------------------
function setHorizon(clock, from, to) {
  S.clock = clock; S.from = from; S.to = to;
  const sl = $("slider");
  sl.min = 0; sl.max = Math.round((to - from) / HOUR);
  if (S.hour === null || S.hour < from || S.hour > to) S.hour = clock;
  sl.value = Math.round((S.hour - from) / HOUR);
  drawTicks();
  showHour();
}
// A tick at each local midnight, a date under each Monday and under now.
function drawTicks() {
  const box = $("slider-ticks");
  box.textContent = "";
  const span = S.to - S.from;
  const at = (t) => `${((t - S.from) / span) * 100}%`;
  for (let t = S.from; t <= S.to; t += HOUR) {
    if (local(t, { hour: "2-digit", hourCycle: "h23" }) !== "00") continue;
    const monday = local(t, { weekday: "short" }) === "Mon";
    const tick = el("span", { class: monday ? "day" : "day minor", title: utc(t), text: monday ? local(t, { day: "numeric", month: "short" }) : "·" });
    tick.style.left = at(t);
    box.append(tick);
  }
  const now = el("span", { class: "now", text: "now" });
  now.style.left = at(S.clock);
  box.append(now);
}
function showHour() {
  const label = $("hour-label");
  label.textContent = fmtHour(S.hour);
  label.title = utc(S.hour);
  const dh = Math.round((S.hour - S.clock) / HOUR);
  const w = $("hour-when");
  w.textContent = dh === 0 ? "now" : dh > 0 ? `forecast +${dh} h` : `past ${dh} h`;
  w.className = dh < 0 ? "past" : "";
  w.setAttribute("data-offset", dh);
  const sl = $("slider");
  const thumb = $("thumb-date");
  thumb.textContent = local(S.hour, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  thumb.title = utc(S.hour);
  thumb.style.left = `${(Number(sl.value) / Math.max(1, Number(sl.max))) * 100}%`;
}
async function loadHour() {
  const hour = S.hour;
  S.loading++;
  try {
    const body = await api("/api/v1/indicators?hour=" + encodeURIComponent(new Date(hour).toISOString()));
    if (hour !== S.hour) return; // the slider moved on meanwhile
    S.rows = new Map(body.indicators.map((r) => [r.zone, r]));
    if (hour === S.clock) S.current = new Map(S.rows);
    // Rows the stream sent while this answer was on its way may be newer than it: the answer
    // says which event it takes in last, and those after it are applied again, in order.
    for (const e of S.pending) if (!(e.id <= body.event_id)) applyRows(e.rows, false);
  } finally {
    if (--S.loading === 0) S.pending = [];
  }
  S.dataAt = Date.now();
  paintAll();
  $("map").dataset.hour = new Date(hour).toISOString();
  // The zone's headline, chart cursor and explanation follow the hour.
  if (S.selected) { renderZone(); loadExplain(); }
}
function goTo(ms) {
  S.hour = Math.min(S.to, Math.max(S.from, ms));
  $("slider").value = Math.round((S.hour - S.from) / HOUR);
  showHour();
  return loadHour();
}
let sliderTimer = null;
$("slider").addEventListener("input", () => {
  S.hour = S.from + Number($("slider").value) * HOUR;
  showHour();
  clearTimeout(sliderTimer);
  sliderTimer = setTimeout(() => loadHour().catch(showError), 60);
});
$("now").onclick = () => goTo(S.clock).catch(showError);

// ---- the zone panel -------------------------------------------------------------------------
async function selectZone(id, hour) {
  S.selected = id;
  if (hour !== undefined && hour !== null) await goTo(hour);
  paintAll();
  renderZone();
  const q = (field) => api(`/api/v1/indicators/range?zone=${encodeURIComponent(id)}&field=${field}&agg=last`);
  const [risk, prot] = await Promise.all([q("risk_score"), q("protection_rate")]);
  if (S.selected !== id) return;
  S.series = { risk: risk.points, prot: prot.points };
  drawChart();
  await loadExplain();
}
function renderZone() {
  const p = $("zone-panel");
  const z = S.zones.find((z) => z.id === S.selected);
  if (!z) return;
  const row = S.rows.get(z.id);
  const lv = levelOf(row);
  const figures = [];
  if (row) {
    figures.push(`risk ${fmt(row.risk_score)} of 100 · level ${row.risk_level} (${LEVEL_NAMES[row.risk_level]}) ${TREND_ARROWS[row.trend]}`,
      `protection ${fmt(row.protection_rate * 100, 0)} % (${row.deployed_agents} of ${row.required_agents} agents)`,
      `crowd ${fmt(row.crowd, 0)} people (load ${fmt(row.load * 100, 0)} % of capacity)`,
      `${row.incidents} incident${row.incidents === 1 ? "" : "s"} in the hour`);
    if (row.criticality !== undefined) {
      figures.push(`criticality ${row.criticality} of 4`,
        row.fluidity === null ? "no traffic fluidity" : `fluidity ${fmt(row.fluidity * 100, 0)} % of free flow (level ${row.fluidity_level})`,
        `${row.calls} hotline call${row.calls === 1 ? "" : "s"}`,
        `confidence ${row.confidence}${row.missing.length ? " (no " + row.missing.join(", ") + ")" : ""}`);
    }
  }
  p.replaceChildren(
    el("h2", { text: "Zone" }),
    el("div", { class: "big", id: "zone-name" }, `${z.name} `, el("span", { class: "levelbox lv" + lv, text: lv || "–" })),
    el("p", { id: "zone-hour" }, `${LAYERS[S.layer].title} at `, timeEl(S.hour)),
    el("p", { id: "zone-figures", "data-hour": new Date(S.hour).toISOString(), text: row ? figures.join(" · ") : "no figures at this hour" }),
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
  const line = (pts, f, cls) => el("polyline", { class: cls, points: pts.filter((q) => q.value !== null).map((q) => `${x(hourMs(q.time)).toFixed(1)},${(H - 14 - f(q.value) * (H - 24)).toFixed(1)}`).join(" ") });
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
  const [zone, hour] = [S.selected, S.hour];
  let e;
  try {
    e = await latest("explain", `/api/v1/explain?zone=${encodeURIComponent(zone)}&hour=${encodeURIComponent(new Date(hour).toISOString())}`);
  } catch (err) { box.replaceChildren(el("p", { class: "hint", text: "why: " + err.message })); return; }
  if (e === STALE || zone !== S.selected || hour !== S.hour) return;
  const t = el("table", { id: "contributions" }, el("tr", {}, el("th", {}, "Why, at ", timeEl(hour)), el("th", { text: "value" }), el("th", { text: "unit" }), el("th", { text: "" })));
  const base = e.contributions.filter((c) => c.part === "base");
  const max = Math.max(1e-9, ...base.map((c) => c.value * (c.weight || 1)));
  for (const c of e.contributions) {
    const bar = el("span", { class: "bar" });
    bar.style.width = `${c.part === "base" ? Math.round((c.value * (c.weight || 1)) / max * 100) : 0}px`;
    t.append(el("tr", { "data-contribution": c.name, title: c.what },
      el("td", { text: c.name.replace("_", " ") }), el("td", { class: "num", text: fmt(c.value, 2) }),
      el("td", { class: "unit", text: c.unit || "" }), el("td", {}, bar)));
  }
  const steps = el("ol", { class: "steps", id: "formula" }, ...e.formula.steps.map((s) =>
    el("li", { "data-step": s.name }, el("b", { text: `${s.name.replace("_", " ")} = ${fmt(s.value, 3)}` }), ` — ${s.text}`)));
  const parts = [t, el("p", { class: "hint", text: `model v${e.model}: ${e.formula.text}` }), steps];
  if (e.v2) {
    parts.push(el("ul", { class: "steps", id: "v2-parts" },
      el("li", { "data-part": "criticality", text: e.v2.criticality.text }),
      el("li", { "data-part": "fluidity", text: e.v2.fluidity.fluidity === null ? e.v2.fluidity.text : `fluidity ${fmt(e.v2.fluidity.fluidity, 3)} (level ${e.v2.fluidity.level}) — ${e.v2.fluidity.text}` }),
      el("li", { "data-part": "confidence", text: `confidence ${e.v2.confidence.text}` })));
  }
  if (e.records) {
    const n = ["recent", "densities", "events", "deployments"].reduce((a, k) => a + e.records[k].length, 0) + (e.records.weather ? 1 : 0);
    parts.push(el("p", { class: "hint", id: "records", text: `${n} record${n === 1 ? "" : "s"} behind this hour (${e.records.recent.length} incidents, ${e.records.events.length} events, ${e.records.densities.length} densities); recomputed from them: ${e.records.agree ? "agrees" : "differs"}` }));
  }
  box.replaceChildren(...parts);
}

// ---- alerts, changes, clashes, feeds ---------------------------------------------------------
function alertSentence(a) {
  const where = a.zone ? zoneName(a.zone) : a.feed ? `feed ${a.feed}` : a.source ? `source ${a.source}` : "the city";
  const when = a.hour ? ` at ${fmtHour(hourMs(a.hour))}` : "";
  const value = a.value === null || a.value === undefined ? "" : ` reached ${fmt(a.value)} (threshold ${fmt(a.threshold)})`;
  return `${where}${value}${when} — rule ${a.rule}, ${a.state}.`;
}
async function loadAlerts() {
  const ul = $("alerts");
  let list;
  try { list = await latest("alerts", "/api/v1/alerts?state=active"); }
  catch (err) { ul.replaceChildren(el("li", { class: "hint", text: "alerts: " + err.message })); return; }
  if (list === STALE) return;
  S.alerts = list;
  $("alert-count").textContent = list.length ? `(${list.length})` : "";
  renderAlerts();
  renderBanner();
}
function renderAlerts() {
  const ul = $("alerts");
  if (!S.alerts.length) { ul.replaceChildren(el("li", { class: "hint", text: "none" })); return; }
  ul.replaceChildren(...S.alerts.map((a) => {
    const since = hourMs(a.since);
    const li = el("li", { class: "go", "data-alert": a.id, "data-state": a.state, "data-zone": a.zone || "" },
      el("span", { class: "sev-" + a.severity, text: a.severity.toUpperCase() }),
      el("span", { class: "msg", text: alertSentence(a) }),
      el("span", { class: "age", title: utc(since), text: `since ${fmtClock(since)}, ${ago(since)}` }));
    li.onclick = (ev) => { if (ev.target.tagName !== "BUTTON" && a.zone) selectZone(a.zone, a.hour ? hourMs(a.hour) : undefined).catch(showError); };
    if (a.acknowledged) li.append(el("span", { class: "acked", text: `acknowledged by ${a.acknowledged.by}` }));
    else li.append(el("button", { class: "ack", type: "button", text: "Acknowledge", onclick: () => ack(a.id) }));
    return li;
  }));
}
// The top alert (critical first, then the newest) as a banner, in wall mode.
function renderBanner() {
  const b = $("banner");
  const rank = { critical: 0, warning: 1, info: 2 };
  const top = [...S.alerts].filter((a) => !a.acknowledged).sort((x, y) => rank[x.severity] - rank[y.severity] || hourMs(y.since) - hourMs(x.since))[0];
  if (!top || !document.body.classList.contains("wall")) { b.hidden = true; return; }
  b.hidden = false;
  b.className = top.severity;
  b.textContent = `${top.severity.toUpperCase()}: ${alertSentence(top)} (${ago(hourMs(top.since))})`;
  b.onclick = () => top.zone && selectZone(top.zone, top.hour ? hourMs(top.hour) : undefined).catch(showError);
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
// A zone changed level at the clock's hour (as the stream says): listed, and the zone pulses.
function noteChange(zone, hour, from, to) {
  S.changes.unshift({ zone, hour, from, to, at: Date.now(), layer: S.layer });
  S.changes = S.changes.slice(0, 12);
  renderChanges();
}
function renderChanges() {
  const ul = $("changes");
  if (!S.changes.length) { ul.replaceChildren(el("li", { class: "hint", text: "none yet" })); return; }
  ul.replaceChildren(...S.changes.map((c) => {
    const li = el("li", { class: "go", "data-zone": c.zone },
      el("span", { class: "levelbox lv" + c.to, text: c.to }),
      el("span", { class: "msg", text: `${zoneName(c.zone)} went from ${LAYERS[c.layer].title} ${c.from} to ${c.to} for ${fmtHour(c.hour)}.` }),
      el("span", { class: "age", title: utc(c.at), text: ago(c.at) }));
    li.onclick = () => selectZone(c.zone, c.hour).catch(showError);
    return li;
  }));
}
async function loadClashes() {
  const list = await latest("clashes", "/api/v1/clashes");
  if (list === STALE) return;
  S.clashes = list;
  renderClashes();
  paintAll();
}
function renderClashes() {
  $("clash-count").textContent = S.clashes.length ? `(${S.clashes.length})` : "";
  $("clashes").replaceChildren(...(S.clashes.length ? S.clashes.map((c) => {
    const [start, end] = [hourMs(c.start), hourMs(c.end)];
    const li = el("li", { class: "go", "data-clash": c.zone },
      el("span", { class: "levelbox lv3", text: c.reason }),
      el("span", { class: "msg" }, `${c.name}: events ${c.a} and ${c.b} overlap from `, timeEl(start), " to ", timeEl(end, fmtClock(end)), ` (${c.reason === "capacity" ? "together beyond the zone's capacity" : "a " + c.reason}).`));
    li.onclick = () => selectZone(c.zone, Math.floor(start / HOUR) * HOUR).catch(showError);
    return li;
  }) : [el("li", { class: "hint", text: "none" })]));
}
function renderFeeds(h) {
  const t = $("feeds");
  t.replaceChildren(el("tr", {}, el("th", { text: "feed" }), el("th", { text: "records" }), el("th", { text: "latest event" }), el("th", { text: "" })));
  for (const f of h.feeds) {
    const last = f.last_event ? hourMs(f.last_event) : null;
    t.append(el("tr", { "data-feed": f.feed }, el("td", { text: f.feed }), el("td", { class: "num", text: f.accepted }),
      el("td", {}, last === null ? "–" : timeEl(last)),
      el("td", { class: "status-" + f.status, text: f.status })));
  }
  t.append(el("tr", {}, el("td", { text: "engine" }), el("td", { class: "num", text: h.engine.records }), el("td", { text: `queue ${h.engine.queued}` }), el("td", { text: `${h.engine.epochs} epochs` })));
}
// Ages move on their own.
setInterval(() => { renderAlerts(); renderChanges(); renderBanner(); }, 30000);

// ---- connection, token ----------------------------------------------------------------------
function showError(err) { console.error(err); if (err.status !== 401) $("live").textContent = err.message; }
function setConnected(up) {
  S.connected = up;
  $("live").textContent = up ? "live" : "connection lost";
  $("live").className = up ? "up" : "down";
  $("map-box").classList.toggle("stale", !up);
  const stale = $("stale");
  stale.hidden = up;
  if (!up) {
    const at = S.dataAt || Date.now();
    stale.textContent = `data as of ${fmtClock(at)}, connection lost`;
    stale.title = utc(at);
  }
}
function askToken(why) {
  if (S.source) { S.source.close(); S.source = null; }
  $("auth").hidden = false;
  document.querySelector("main").hidden = true;
  $("auth-why").textContent = `The server refused the request (401: ${why}): give the token of a viewer or an operator.`;
  $("live").textContent = "token needed"; $("live").className = "down";
  $("auth-token").focus();
}
function useToken(value) {
  S.token = value.trim() || null;
  if (S.token) localStorage.setItem("vigie-token", S.token); else localStorage.removeItem("vigie-token");
  $("auth").hidden = true;
  document.querySelector("main").hidden = false;
  start();
}
$("login").addEventListener("submit", (e) => { e.preventDefault(); const v = $("token").value; $("token").value = ""; useToken(v); });
$("auth-form").addEventListener("submit", (e) => { e.preventDefault(); const v = $("auth-token").value; $("auth-token").value = ""; useToken(v); });

async function loadAll() {
  const me = await api("/api/v1/whoami");
  S.role = me.role;
  $("who").textContent = `${me.name} (${me.role})`;
  const zones = await api("/api/v1/zones");
  S.tz = zones.timezone || "UTC";
  S.model = zones.model || 1;
  if (zones.level_thresholds) S.bands.risk = zones.level_thresholds;
  if (zones.fluidity_thresholds) S.bands.fluidity = zones.fluidity_thresholds;
  $("layers").hidden = S.model < 2;
  if (S.model < 2) S.layer = "risk";
  const ind = await api("/api/v1/indicators");
  S.eventId = ind.event_id;
  setHorizon(hourMs(ind.clock), hourMs(ind.horizon.from), hourMs(ind.horizon.to));
  if (!S.zones.length) drawMap(zones.features);
  legend();
  await loadHour();
  await Promise.all([loadAlerts(), loadClashes(), api("/api/v1/feeds").then(renderFeeds)]);
  if (S.selected) await selectZone(S.selected);
}

// Rows of an `indicators` event: the map, the zone shown and, when `noted`, the list of
// changes (rows applied again after a load are not noted twice, and the load redraws the
// zone shown itself).
function applyRows(rows, noted) {
  S.dataAt = Date.now();
  let selectedChanged = false;
  for (const r of rows) {
    const t = hourMs(r.hour);
    const z = S.zones.find((z) => z.id === r.zone);
    if (t === S.clock) {
      const before = S.current.get(r.zone);
      if (noted && before && levelOf(before) !== levelOf(r)) { noteChange(r.zone, t, levelOf(before), levelOf(r)); if (z) pulse(z); }
      S.current.set(r.zone, r);
    }
    if (t === S.hour) { S.rows.set(r.zone, r); if (z) paintZone(z); }
    if (r.zone === S.selected && S.series) {
      for (const [k, f] of [["risk", "risk_score"], ["prot", "protection_rate"]]) {
        const p = S.series[k].find((q) => hourMs(q.time) === t);
        if (p) p.value = r[f]; else S.series[k].push({ time: r.hour, value: r[f] });
      }
      selectedChanged = true;
    }
  }
  if (selectedChanged) {
    for (const k of ["risk", "prot"]) S.series[k].sort((a, b) => hourMs(a.time) - hourMs(b.time));
    if (noted) { renderZone(); loadExplain(); }
  }
}

function connect() {
  if (S.source) S.source.close();
  // From the event the rows fetched last take in: what changed since comes first (or a
  // `reset`, when the server no longer keeps it).
  const q = new URLSearchParams();
  if (S.token) q.set("access_token", S.token);
  if (S.eventId !== null && S.eventId !== undefined) q.set("last_event_id", S.eventId);
  const url = "/api/v1/stream" + (q.toString() ? "?" + q : "");
  const es = new EventSource(url);
  S.source = es;
  es.onopen = () => setConnected(true);
  es.onerror = () => {
    setConnected(false);
    // A stream refused for its token looks like any error to EventSource: ask the API why.
    fetch("/api/v1/whoami", { headers: headers() }).then((r) => { if (r.status === 401) r.json().then((b) => askToken(b.error)).catch(() => askToken("unknown token")); }).catch(() => {});
  };
  es.addEventListener("indicators", (m) => {
    const { rows } = JSON.parse(m.data);
    if (S.loading) S.pending.push({ id: Number(m.lastEventId), rows });
    applyRows(rows, true);
  });
  es.addEventListener("clashes", () => loadClashes().catch(showError));
  es.addEventListener("feeds", (m) => { S.dataAt = Date.now(); renderFeeds(JSON.parse(m.data)); });
  es.addEventListener("alert", () => loadAlerts().catch(showError));
  // The clock moved, or this page missed more than the server keeps: read everything again.
  for (const kind of ["clock", "reset"]) es.addEventListener(kind, () => loadAll().catch(showError));
}

function start() {
  loadAll().then(connect).catch((err) => { showError(err); if (err.status !== 401) { setConnected(false); connect(); } });
}
start();
