"""What the two model peers share: the indicator model of `indicators.md` (v2, and v1 behind a
flag) outside of any engine — the configuration and the zone file, the calendar, the records
(CSV through a mapping, or NDJSON) read and validated, and the formula of one zone and hour.

The dataflows themselves — which records count (upserts), the clock, the hourly sums, the
baselines and typical values over 52 weeks, the events spread over the hours they overlap, the
neighbours' spill, the trends — are written in each engine's idiom in `pathway_model_peer.py`
and `bytewax_model_peer.py`; they call `indicator()` for the arithmetic of one zone and hour
once its inputs are gathered, `trend()` for the trends and `line()` for the output.

Written from docs/indicators.md (v1, v2 and "Precise readings") and the configuration files
(`benchmarks/workloads/peers.toml`, the keys of `config/default.toml`), not from vigie's code.
"""

import csv
import io
import json
import math
import os
from datetime import datetime, timedelta, timezone

try:
    import tomllib
except ImportError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

FEEDS = ("incident", "density", "event", "weather", "deployment", "call", "traffic")
EVENT_KINDS = ("market", "festival", "sport", "concert", "demonstration", "official_visit",
               "filming", "roadworks", "other")

# Record tuples: (feed, seq, id, cancelled, zone, ts, payload). `seq` is the arrival order (the
# index of the input, then the line), `id` the upsert key as text or None, `zone` a zone id or
# None when the record is in no zone (weather and cancellations: ""). Payloads by feed (None
# for a cancellation):
#   incident (severity,)  call ()  density / traffic (people or volume, sensor)
#   event (start, end, attendance, kind)  deployment (start, end, agents)
#   weather (kind, temperature_c, precip_mm, wind_kmh, issued_at)
FEED, SEQ, ID, CANCELLED, ZONE, TS, PAYLOAD = range(7)


class Model:
    """The model's coefficients: the defaults of indicators.md, overridden by `[model]`."""

    DEFAULTS = dict(
        version=2, weeks=52, past_hours=168, future_hours=720, recent_weight=0.5,
        overload_weight=0.8, event_weight=0.3, heat_threshold_c=30.0, heat_weight=0.02,
        wind_threshold_kmh=60.0, wind_weight=0.1, rain_threshold_mm=2.0, rain_weight=0.1,
        demonstration_weight=0.5, level_thresholds=[25.0, 50.0, 75.0], trend_threshold=5.0,
        call_weight=0.25, spill_share=0.25, surge_rate=0.05, vehicles_per_attendee=0.1,
        bpr_alpha=0.15, bpr_beta=4.0, fluidity_thresholds=[0.9, 0.75, 0.5],
        load_trend_threshold=0.05, fluidity_trend_threshold=0.05, stale_incident_hours=6,
        exposure_rates=dict(sport=0.12, concert=0.08, festival=0.08, demonstration=0.15,
                            market=0.03, official_visit=0.05, filming=0.01, other=0.05,
                            roadworks=0.0),
    )

    def __init__(self, section=None, version=None):
        section = dict(section or {})
        for k, v in self.DEFAULTS.items():
            setattr(self, k, dict(v) if isinstance(v, dict) else v)
        rates = section.pop("exposure_rates", {})
        for k, v in section.items():
            if k not in self.DEFAULTS:
                raise SystemExit(f"[model] {k}: unknown key")
            setattr(self, k, v)
        for k, v in rates.items():
            if k not in EVENT_KINDS:
                raise SystemExit(f"[model.exposure_rates] {k}: unknown kind")
            self.exposure_rates[k] = float(v)
        if version is not None:
            self.version = int(version)
        if self.version not in (1, 2):
            raise SystemExit(f"model version {self.version}: 1 or 2")


class Zone:
    def __init__(self, props, rings):
        self.id = str(props["id"])
        self.capacity = float(props["capacity"])
        self.scale = float(props["scale"])
        self.min_agents = props.get("min_agents", 0)
        self.max_agents = props.get("max_agents", 0)
        self.default_density = float(props.get("default_density", 0))
        rc = props.get("road_capacity")
        self.road_capacity = None if rc is None else float(rc)
        self.listed_neighbours = props.get("neighbours")
        self.rings = rings  # polygons' rings, [(lon, lat), ...] each
        self.neighbours = []


def _rings(geometry):
    if not geometry:
        return []
    if geometry["type"] == "Polygon":
        polys = [geometry["coordinates"]]
    elif geometry["type"] == "MultiPolygon":
        polys = geometry["coordinates"]
    else:
        raise SystemExit(f"zone geometry {geometry['type']}: Polygon or MultiPolygon only")
    return [[[(float(p[0]), float(p[1])) for p in ring] for ring in poly] for poly in polys]


def _segments(zone):
    for poly in zone.rings:
        for ring in poly:
            for i in range(len(ring) - 1):
                yield ring[i], ring[i + 1]


def _touch(s, t):
    """Whether two closed segments share a point (exact arithmetic on the coordinates)."""
    (p1, p2), (q1, q2) = s, t

    def orient(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return (v > 0) - (v < 0)

    def on(a, b, c):
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    o1, o2, o3, o4 = orient(p1, p2, q1), orient(p1, p2, q2), orient(q1, q2, p1), orient(q1, q2, p2)
    if o1 != o2 and o3 != o4:
        return True
    return ((o1 == 0 and on(p1, p2, q1)) or (o2 == 0 and on(p1, p2, q2))
            or (o3 == 0 and on(q1, q2, p1)) or (o4 == 0 and on(q1, q2, p2)))


def _bbox(zone):
    pts = [p for poly in zone.rings for ring in poly for p in ring]
    if not pts:
        return None
    return (min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts), max(p[1] for p in pts))


def load_zones(path):
    """The zone file: {id: Zone}, in the file's order, with each zone's neighbours resolved."""
    with open(path) as f:
        doc = json.load(f)
    zones = {}
    for feat in doc["features"]:
        z = Zone(feat["properties"], _rings(feat.get("geometry")))
        zones[z.id] = z
    boxes = {z.id: _bbox(z) for z in zones.values()}
    for z in zones.values():
        if z.listed_neighbours is not None:
            ns = []
            for n in z.listed_neighbours:
                n = str(n)
                if n == z.id or n not in zones:
                    raise SystemExit(f"{path}: zone {z.id}: neighbour {n} is itself or not a zone")
                if n not in ns:
                    ns.append(n)
            z.neighbours = ns
            continue
        # Polygon adjacency: the zones whose polygons share a boundary point with z's.
        a = boxes[z.id]
        for o in zones.values():
            b = boxes[o.id]
            if o.id == z.id or a is None or b is None:
                continue
            if a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]:
                continue
            segs = list(_segments(o))
            if any(_touch(s, t) for s in _segments(z) for t in segs):
                z.neighbours.append(o.id)
    return zones


def locate(zones, lon, lat):
    """The zone whose polygon contains the point (even-odd rule over the rings), or None."""
    for z in zones.values():
        for poly in z.rings:
            inside = False
            for ring in poly:
                n = len(ring)
                for i in range(n - 1):
                    (x1, y1), (x2, y2) = ring[i], ring[i + 1]
                    if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
                        inside = not inside
            if inside:
                return z.id
    return None


class Calendar:
    """how(h) and week(h) of UTC hours in the configured time zone, cached per hour."""

    def __init__(self, tz_name):
        self.utc = tz_name in ("UTC", "Etc/UTC", "Z")
        if not self.utc:
            from zoneinfo import ZoneInfo
            self.tz = ZoneInfo(tz_name)
        self._cache = {}

    def how_week(self, h):
        r = self._cache.get(h)
        if r is None:
            if self.utc:
                days = h // 24 + 719162  # days since 0001-01-01, a Monday
                r = ((days % 7) * 24 + h % 24, days // 7)
            else:
                local = datetime.fromtimestamp(h * 3600, self.tz)
                days = local.date().toordinal() - 1
                r = (local.weekday() * 24 + local.hour, days // 7)
            self._cache[h] = r
        return r


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def hour_text(h):
    return (_EPOCH + timedelta(hours=h)).strftime("%Y-%m-%dT%H:00:00Z")


def time_text(t):
    """`YYYY-MM-DDTHH:MM:SSZ`; a time with a fraction of a second gets its microseconds
    (rounded half away from zero), as vigie writes it (indicators.md gives no format for fractions)."""
    x = t * 1_000_000
    s, us = divmod(int(math.copysign(math.floor(abs(x) + 0.5), x)), 1_000_000)
    text = (_EPOCH + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (".%06dZ" % us if us else "Z")


def hour_of(t):
    return int(t // 3600)


def overlap_hours(start, end):
    """The hours h with start < (h+1)·3600 and end > h·3600."""
    return hour_of(start), -int((-end) // 3600) - 1


# ---- records -------------------------------------------------------------------------------

def parse_time(v, fmt="auto"):
    """RFC 3339 with an offset, or unix seconds (a number); None when it is neither."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        if fmt == "unix_ms":
            return v / 1000
        return v if math.isfinite(v) else None
    if not isinstance(v, str):
        return None
    s = v.strip()
    if fmt in ("unix", "unix_ms"):
        try:
            n = int(s)
        except ValueError:
            try:
                n = float(s)
            except ValueError:
                return None
        return n / 1000 if fmt == "unix_ms" else n
    if len(s) < 20 or s[10] not in "Tt ":
        return None
    if s[-1] in "Zz":
        s = s[:-1] + "+00:00"
    frac = 0.0
    dot = s.find(".", 19)
    if dot >= 0:
        end = dot + 1
        while end < len(s) and s[end].isdigit():
            end += 1
        frac = float("0" + s[dot:end])
        s = s[:dot] + s[end:]
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        return None
    if d.tzinfo is None:
        return None
    secs = int((d - _EPOCH) // timedelta(seconds=1))
    return secs + frac if frac else secs


def _number(v):
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return v if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            try:
                f = float(v)
                return f if math.isfinite(f) else None
            except ValueError:
                return None
    return None


def _text_id(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class Records:
    """Validates records into tuples; counts what it refuses."""

    def __init__(self, zones):
        self.zones = zones
        self.refused = 0
        self.unlocated = 0

    def _zone(self, rec):
        z = rec.get("zone")
        if z is not None and z != "":
            z = _text_id(z)
            return z if z in self.zones else None
        lat, lon = _number(rec.get("lat")), _number(rec.get("lon"))
        if lat is None or lon is None:
            return None
        return locate(self.zones, lon, lat)

    def record(self, rec, seq):
        """A record (dict, from NDJSON or a CSV mapping) as a tuple, or None when refused."""
        r = self._record(rec, seq)
        if r is None:
            self.refused += 1
        elif r[ZONE] is None:
            self.unlocated += 1
        return r

    def _record(self, rec, seq):
        if not isinstance(rec, dict):
            return None
        feed = rec.get("feed")
        ts = parse_time(rec.get("ts"))
        if feed not in FEEDS or ts is None:
            return None
        rid = _text_id(rec.get("id"))
        cancelled = rid is not None and rec.get("status") == "cancelled"
        if cancelled:
            # A cancellation carries no values: only its (feed, id) and ts count (a reading of
            # the text that vigie shares: its other fields are not validated).
            return (feed, seq, rid, True, "", ts, None)
        if feed == "weather":
            kind = rec.get("kind")
            if kind not in ("observed", "forecast"):
                return None
            vals = []
            for k in ("temperature_c", "precip_mm", "wind_kmh"):
                v = rec.get(k)
                if v is not None:
                    v = _number(v)
                    if v is None:
                        return None
                vals.append(v)
            issued = rec.get("issued_at")
            if issued is not None:
                issued = parse_time(issued)
                if issued is None:
                    return None
            return ("weather", seq, rid, cancelled, "", ts, (kind, vals[0], vals[1], vals[2], issued))
        zone = self._zone(rec)
        if feed == "incident":
            sev = _number(rec.get("severity"))
            if sev is None or sev != int(sev) or not 1 <= sev <= 5:
                return None
            payload = (int(sev),)
        elif feed == "call":
            payload = ()
        elif feed in ("density", "traffic"):
            v = _number(rec.get("people" if feed == "density" else "volume"))
            if v is None or v < 0:
                return None
            sensor = rec.get("sensor")
            payload = (v, "" if sensor is None else str(sensor))
        else:  # event, deployment
            start, end = parse_time(rec.get("start")), parse_time(rec.get("end"))
            if rid is None or start is None or end is None or end <= start:
                return None
            if feed == "event":
                att, kind = _number(rec.get("attendance")), rec.get("kind")
                if att is None or att < 0 or kind not in EVENT_KINDS:
                    return None
                payload = (start, end, att, kind)
            else:
                agents = _number(rec.get("agents"))
                if agents is None or agents < 0:
                    return None
                payload = (start, end, agents)
        return (feed, seq, rid, cancelled, zone, ts, payload)


# ---- configuration and inputs --------------------------------------------------------------

class Config:
    def __init__(self, path, version=None):
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        base = os.path.dirname(os.path.abspath(path))
        self.timezone = doc.get("timezone", "Europe/Paris")
        self.calendar = Calendar(self.timezone)
        self.zones = load_zones(os.path.join(base, doc["zones"]))
        self.model = Model(doc.get("model"), version)
        self.mappings = doc.get("mappings", {})


class Mapping:
    """A CSV mapping of the configuration, the subset these peers read: `feed`,
    `time = {column, format}` (format unix, unix_ms or rfc3339), `location = {zone = {column}}`
    or `{lat = {column}, lon = {column}}`, and `fields.NAME = {column}` (times in `start`, `end`,
    `issued_at` with an optional format). Anything else is refused with its name."""

    def __init__(self, name, spec):
        self.name = name
        self.feed = spec.get("feed")
        if self.feed not in FEEDS:
            raise SystemExit(f"mapping {name}: feed {self.feed!r}")
        for k in spec:
            if k not in ("feed", "time", "location", "fields"):
                raise SystemExit(f"mapping {name}: key {k!r} not supported by this peer")
        t = spec.get("time", {})
        if set(t) - {"column", "format"} or "column" not in t:
            raise SystemExit(f"mapping {name}: time {t!r} not supported by this peer")
        self.time_column, self.time_format = t["column"], t.get("format", "rfc3339")
        if self.time_format not in ("unix", "unix_ms", "rfc3339"):
            raise SystemExit(f"mapping {name}: time format {self.time_format!r} not supported by this peer")
        loc = spec.get("location", {})
        self.zone_column = self.lat_column = self.lon_column = None
        if set(loc) == {"zone"} and set(loc["zone"]) == {"column"}:
            self.zone_column = loc["zone"]["column"]
        elif set(loc) == {"lat", "lon"} and all(set(loc[k]) == {"column"} for k in loc):
            self.lat_column, self.lon_column = loc["lat"]["column"], loc["lon"]["column"]
        elif loc:
            raise SystemExit(f"mapping {name}: location {loc!r} not supported by this peer")
        self.fields = {}
        for k, v in spec.get("fields", {}).items():
            if set(v) - {"column", "format"} or "column" not in v:
                raise SystemExit(f"mapping {name}: field {k} {v!r} not supported by this peer")
            self.fields[k] = (v["column"], v.get("format"))

    def simple(self):
        """Whether no record of it needs its arrival order (no ids, no weather): a peer may then
        read it with its engine's own CSV reader."""
        return "id" not in self.fields and self.feed != "weather"

    def reader(self, header):
        """A function (list of cells, seq) -> the record as a dict."""
        idx = {c: i for i, c in enumerate(header)}

        def col(c):
            if c not in idx:
                raise SystemExit(f"mapping {self.name}: no column {c!r} in {header}")
            return idx[c]

        ti, tf = col(self.time_column), self.time_format
        zi = col(self.zone_column) if self.zone_column else None
        lat = (col(self.lat_column), col(self.lon_column)) if self.lat_column else None
        fields = [(k, col(c), f) for k, (c, f) in self.fields.items()]
        feed = self.feed

        def read(cells):
            rec = {"feed": feed, "ts": parse_time(cells[ti], tf)}
            if zi is not None:
                rec["zone"] = cells[zi]
            if lat is not None:
                rec["lat"], rec["lon"] = cells[lat[0]], cells[lat[1]]
            for k, i, f in fields:
                v = cells[i]
                if v == "":
                    continue
                if k in ("start", "end", "issued_at"):
                    v = parse_time(v, f or "rfc3339")
                rec[k] = v
            return rec

        return read

    def incident_reader(self, header, zones):
        """For a plain incident mapping (zone column, unix seconds, no id): a function (cells,
        seq) -> the record tuple, None when refused or in no zone, False when the cells need
        the general path; None for any other mapping."""
        if (self.feed != "incident" or self.zone_column is None or self.time_format != "unix"
                or set(self.fields) - {"severity", "category"} or "severity" not in self.fields):
            return None
        idx = {c: i for i, c in enumerate(header)}
        try:
            ti, zi, si = idx[self.time_column], idx[self.zone_column], idx[self.fields["severity"][0]]
        except KeyError:
            return None

        def read(cells, seq):
            try:
                ts, sev = int(cells[ti]), int(cells[si])
            except (ValueError, IndexError):
                return False
            zone = cells[zi]
            if not 1 <= sev <= 5 or zone not in zones:
                return None
            return ("incident", seq, None, False, zone, ts, (sev,))

        return read


def split_csv(line):
    if '"' in line:
        return next(csv.reader(io.StringIO(line)))
    return line.split(",")


def parse_inputs(config, specs):
    """`MAPPING=PATH` (CSV through a mapping) or `PATH` (NDJSON records), as `vigie replay
    --input`: [(path, Mapping or None)], in arrival order."""
    out = []
    for s in specs:
        name, eq, path = s.partition("=")
        if eq and name in config.mappings:
            out.append((path, Mapping(name, config.mappings[name])))
        else:
            out.append((s, None))
    return out


SEQ_SHIFT = 1 << 40  # seq = input index · SEQ_SHIFT + line number


# ---- the formula of one zone and hour ------------------------------------------------------

def weather_factor(M, w):
    """f_w from a weather payload (kind, temperature_c, precip_mm, wind_kmh, issued_at), or 1."""
    if w is None:
        return 1.0
    _, t, p, wind = w[0], w[1], w[2], w[3]
    f = 1.0
    if t is not None:
        f = f + M.heat_weight * max(0.0, t - M.heat_threshold_c)
    if wind is not None and wind > M.wind_threshold_kmh:
        f = f + M.wind_weight
    if p is not None and p > M.rain_threshold_mm:
        f = f - M.rain_weight
    return f


def indicator(M, zp, h, clock_h, last_inc_h, I0, I1, I2, base_sum, obs, typ_sum, typ_n, E, X,
              spill_sum, demo, deployed, f_w, has_weather, tr_obs, trt_sum, trt_n):
    """Everything of one zone and hour but the trends: a dict of the output's values, and the
    three series the trends read (risk_score, load, fluidity)."""
    baseline = base_sum / M.weeks
    recent = I0 + I1 + I2
    typical = typ_sum / typ_n if typ_n else zp.default_density
    crowd = obs if obs is not None else typical + E
    load = crowd / zp.capacity
    if M.version == 2:
        spill = M.spill_share * spill_sum
        surge = M.surge_rate * max(0.0, obs - typical) / 1000 if obs is not None else 0.0
        exposure = X + spill + surge
        raw = ((baseline + M.recent_weight * recent + exposure)
               * (1 + M.overload_weight * max(0.0, load - 1)) * f_w
               * (1 + M.demonstration_weight * demo))
    else:
        raw = ((baseline + M.recent_weight * recent)
               * (1 + M.overload_weight * max(0.0, load - 1) + M.event_weight * E / zp.capacity)
               * f_w * (1 + M.demonstration_weight * demo))
    risk = 100 * (1 - math.exp(-raw / zp.scale))
    t1, t2, t3 = M.level_thresholds
    level = 1 if risk < t1 else 2 if risk < t2 else 3 if risk < t3 else 4
    required = max(zp.min_agents, math.ceil(risk / 100 * zp.max_agents))
    protection = 1.0 if required == 0 else min(1.0, deployed / required)
    v = {"risk_score": risk, "risk_level": level, "protection_rate": protection,
         "required_agents": required, "deployed_agents": deployed, "crowd": crowd,
         "load": load}
    contributions = {"baseline": baseline, "recent": recent, "events": E, "weather": f_w,
                     "demonstration": demo}
    fluidity = None
    if M.version == 2:
        short = required - deployed
        crit = (4 if level == 4 and short > 0 else
                3 if (level >= 3 and short > 0) or level == 4 else
                2 if (level >= 2 and short > 0) or level == 3 else 1)
        traffic = None
        if tr_obs is not None:
            traffic = tr_obs
        elif trt_n:
            traffic = trt_sum / trt_n + M.vehicles_per_attendee * E
        level_f = None
        if traffic is not None and zp.road_capacity is not None:
            vc = traffic / zp.road_capacity
            fluidity = 1 / (1 + M.bpr_alpha * vc ** M.bpr_beta)
            f1, f2, f3 = M.fluidity_thresholds
            level_f = 1 if fluidity >= f1 else 2 if fluidity >= f2 else 3 if fluidity >= f3 else 4
        missing = []
        if h <= clock_h and obs is None and typ_n:
            missing.append("density")
        if h <= clock_h and (last_inc_h is None or (
                last_inc_h < clock_h - M.stale_incident_hours and h > last_inc_h)):
            missing.append("incident")
        if not has_weather:
            missing.append("weather")
        v.update(criticality=crit, traffic=traffic, fluidity=fluidity, fluidity_level=level_f,
                 missing=missing,
                 confidence="high" if not missing else "reduced" if len(missing) == 1 else "low")
        contributions.update(exposure=exposure, spill=spill, surge=surge)
    v["contributions"] = contributions
    return v, (risk, load, fluidity)


def trend(x, prev, tau):
    """rising / falling / stable against the mean of the three previous values (h−1, h−2,
    h−3); None when any of the four is None."""
    if x is None or any(p is None for p in prev):
        return None
    m = (prev[0] + prev[1] + prev[2]) / 3
    if x - m > tau:
        return "rising"
    if m - x > tau:
        return "falling"
    return "stable"


def trends(M, series, prev):
    """The trends of an hour from its (risk, load, fluidity) and those of h−1, h−2, h−3."""
    out = {"trend": trend(series[0], [p[0] for p in prev], M.trend_threshold)}
    if M.version == 2:
        out["load_trend"] = trend(series[1], [p[1] for p in prev], M.load_trend_threshold)
        out["fluidity_trend"] = trend(series[2], [p[2] for p in prev], M.fluidity_trend_threshold)
    return out


def line(zone_id, hour, values, trend_values, N, C, version):
    d = {"type": "indicator", "zone": zone_id, "hour": hour_text(hour)}
    d.update(values)
    d.update(trend_values)
    d["incidents"] = N
    if version == 2:
        d["calls"] = C
    else:
        for k in ("criticality", "traffic", "fluidity", "fluidity_level", "missing", "confidence"):
            d.pop(k, None)
    return json.dumps(d)


def clashes(zp, events):
    """Clash lines of one zone from its counted events [(id, start, end, attendance, kind)]."""
    out = []
    evs = sorted(events, key=lambda e: e[0])
    for i, a in enumerate(evs):
        for b in evs[i + 1:]:
            if not (a[1] < b[2] and b[1] < a[2]):
                continue
            kinds = (a[4], b[4])
            if "demonstration" in kinds:
                reason = "demonstration"
            elif "roadworks" in kinds:
                reason = "roadworks"
            elif a[3] + b[3] > zp.capacity:
                reason = "capacity"
            else:
                continue
            out.append(json.dumps({"type": "clash", "zone": zp.id, "a": a[0], "b": b[0],
                                   "start": time_text(max(a[1], b[1])),
                                   "end": time_text(min(a[2], b[2])), "reason": reason}))
    return out


def better_weather(a, b):
    """Of two weather records (tuples) describing the same hour, the one that counts: observed
    over forecast; among observed the last arrived; among forecasts the greatest issued_at (one
    without ranks below any with one), then the last arrived."""
    pa, pb = a[PAYLOAD], b[PAYLOAD]
    if pa[0] != pb[0]:
        return a if pa[0] == "observed" else b
    if pa[0] == "forecast":
        ka = (pa[4] is not None, pa[4] if pa[4] is not None else 0, a[SEQ])
        kb = (pb[4] is not None, pb[4] if pb[4] is not None else 0, b[SEQ])
        return a if ka > kb else b
    return a if a[SEQ] > b[SEQ] else b


def upsert_winner(a, b):
    """Of two versions of one (feed, id), the one that counts: the greatest ts, then the last
    arrived."""
    return a if (a[TS], a[SEQ]) > (b[TS], b[SEQ]) else b
