#!/usr/bin/env python3
"""Independent reference implementation of the indicator models v1 and v2 (docs/model.md).

Written from the specification text only, to cross-check the engine's `replay` output.

Usage:
    python3 indicators_reference.py [--model {1,2}] --zones ZONES.geojson --tz Europe/Paris \
        --records RECORDS.ndjson [--weeks 52 --past-hours 168 --future-hours 720] --out OUT.ndjson
        [v2 coefficients: --call-weight, --rate-KIND (nine kinds), --spill-share, --surge-rate,
         --vehicles-per-attendee, --stale-incident-hours, --fluidity-level1/2/3, --bpr-alpha,
         --bpr-exponent, --load-trend-tau, --fluidity-trend-tau; see --help]

`--model 2` (the default) is "Reference indicator model v2" with the "Precise readings";
`--model 1` is "Reference indicator model v1" (its formulas and output keys) with the same
"Precise readings (v1 and v2)" and the same validation as v2; v1 has no `call` or `traffic`
feed, so such records are refused under v1 as unknown feeds.

Records are located by `zone` only (lat/lon is not mapped). Arrival order is the line order.
Timestamps are kept exact (Decimal) so that ties and hour buckets do not suffer from rounding.
v2 neighbours by polygon adjacency use an exact (rational) segment-intersection test over all
rings of the zones' Polygon/MultiPolygon geometries.
"""

import argparse
import datetime as dt
import json
import math
import sys
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

FEEDS = {"incident", "density", "event", "weather", "deployment"}
EVENT_KINDS = {"market", "festival", "sport", "concert", "demonstration", "official_visit",
               "filming", "roadworks", "other"}
EPOCH_MONDAY = dt.date(1970, 1, 5)

# Model coefficients (defaults of the spec).
RECENT_W = 0.5
OVERLOAD_W = 0.8
EVENT_W = 0.3
HEAT_T, HEAT_W = 30.0, 0.02
WIND_T, WIND_W = 60.0, 0.1
RAIN_T, RAIN_W = 2.0, 0.1
DEMO_W = 0.5
LEVELS = (25.0, 50.0, 75.0)
TREND_T = 5.0


class Invalid(Exception):
    pass


def is_num(v):
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def parse_time(v):
    """RFC 3339 string or unix seconds number -> Decimal seconds since the epoch."""
    if is_num(v):
        d = Decimal(v) if not isinstance(v, float) else Decimal(repr(v))
        if not d.is_finite():
            raise Invalid("non-finite time")
        return d
    if isinstance(v, str):
        s = v.strip()
        if len(s) < 20 or s[10] not in "Tt":
            raise Invalid("bad time %r" % v)
        s2 = s[:-1] + "+00:00" if s[-1] in "Zz" else s
        # Split off the fractional part ourselves to keep it exact.
        frac = Decimal(0)
        main = s2
        if len(s2) > 19 and s2[19] == ".":
            j = 20
            while j < len(s2) and s2[j].isdigit():
                j += 1
            if j == 20:
                raise Invalid("bad fraction")
            frac = Decimal("0." + s2[20:j])
            main = s2[:19] + s2[j:]
        try:
            t = dt.datetime.fromisoformat(main.replace("t", "T", 1))
        except ValueError:
            raise Invalid("bad time %r" % v)
        if t.tzinfo is None or len(main) != 25:
            raise Invalid("time without offset %r" % v)
        secs = int((t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds())
        return Decimal(secs) + frac
    raise Invalid("bad time type")


def hour_of(t):
    return int((t / 3600).to_integral_value(rounding="ROUND_FLOOR"))


def fmt_hour(h):
    return dt.datetime.fromtimestamp(h * 3600, dt.timezone.utc).strftime("%Y-%m-%dT%H:00:00Z")


def fmt_time(t):
    whole = int(t.to_integral_value(rounding="ROUND_FLOOR"))
    s = dt.datetime.fromtimestamp(whole, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = t - whole
    if frac:
        s += str(frac)[1:].rstrip("0")
    return s + "Z"


def get_num(rec, key, required, minimum=None):
    v = rec.get(key)
    if v is None:
        if required:
            raise Invalid("missing " + key)
        return None
    if not is_num(v):
        raise Invalid("not a number: " + key)
    v = float(v)
    if not math.isfinite(v):
        raise Invalid("non-finite " + key)
    if minimum is not None and v < minimum:
        raise Invalid("out of range " + key)
    return v


# ---------------------------------------------------------------------------------------------
# Shared by v1 and v2: record validation and the "Precise readings (v1 and v2)" of the spec
# (upserts, location, clock, weather, sensors, numbers). v1 differs only in its feeds (no `call`
# or `traffic`: under v1 such records are refused as unknown feeds) and in its formulas.
# ---------------------------------------------------------------------------------------------

FEEDS2 = FEEDS | {"call", "traffic"}


def text_id(v, what):
    """Ids compared as text: a whole-number id is its decimal text (1, 1.0 and "1" agree)."""
    if isinstance(v, str):
        return v
    if is_num(v):
        d = Decimal(v) if not isinstance(v, float) else Decimal(repr(v))
        if not d.is_finite():
            raise Invalid(what)
        if d == d.to_integral_value():
            return str(int(d))
        # Not settled by the spec: a fractional numeric id keeps its JSON text (never generated).
        return str(d)
    # Chosen: an id that is neither text nor a number (list, object, bool) refuses the record.
    raise Invalid(what)


def sensor_key(rec):
    s = rec.get("sensor")
    if s is None or s == "":
        return None  # precise reading: null or "" is the unnamed sensor
    # Not settled by the spec: sensor names are compared by their JSON value, so 1 and "1" are
    # two sensors (the generators only write strings).
    return json.dumps(s, sort_keys=True)


def validate(rec, feeds):
    """Return a normalised dict or raise Invalid. `feeds`: the feeds of the model (FEEDS for v1,
    FEEDS2 for v2); any other feed is refused."""
    if not isinstance(rec, dict):
        raise Invalid("not an object")
    feed = rec.get("feed")
    if feed not in feeds:
        raise Invalid("feed")
    if "ts" not in rec:
        raise Invalid("ts")
    out = {"feed": feed, "ts": parse_time(rec["ts"])}
    rid = rec.get("id")
    out["id"] = None if rid is None else text_id(rid, "id")
    # Precise reading: `status` has no effect on a record without `id`. A cancellation with an
    # id needs only feed, ts and id (a cancellation line carries nothing else); it is an upsert
    # version like any other.
    if out["id"] is not None and rec.get("status") == "cancelled":
        out["cancelled"] = True
        return out
    out["cancelled"] = False
    if feed != "weather":
        z = rec.get("zone")
        if isinstance(z, str):
            out["zone"] = z
        elif is_num(z):
            out["zone"] = str(z)
        else:
            # The reference locates by `zone` only; a record without one is refused here (the
            # generators never write lat/lon).
            raise Invalid("zone (lat/lon not supported by the reference)")
    if feed == "incident":
        sev = rec.get("severity")
        # "integer or float spelling of a number is free": 3.0 is severity 3.
        if not is_num(sev) or Decimal(sev) != Decimal(sev).to_integral_value() \
                or not 1 <= sev <= 5:
            raise Invalid("severity")
        out["severity"] = int(sev)
    elif feed == "density":
        out["people"] = get_num(rec, "people", True, 0.0)
        out["sensor"] = sensor_key(rec)
    elif feed == "traffic":
        out["volume"] = get_num(rec, "volume", True, 0.0)
        out["sensor"] = sensor_key(rec)
    elif feed == "call":
        pass
    elif feed == "event":
        if out["id"] is None:
            raise Invalid("event id")
        if "start" not in rec or "end" not in rec:
            raise Invalid("start/end")
        out["start"] = parse_time(rec["start"])
        out["end"] = parse_time(rec["end"])
        if out["end"] <= out["start"]:
            raise Invalid("end <= start")
        out["attendance"] = get_num(rec, "attendance", True, 0.0)
        if rec.get("kind") not in EVENT_KINDS:
            raise Invalid("kind")
        out["kind"] = rec["kind"]
    elif feed == "weather":
        if rec.get("kind") not in ("observed", "forecast"):
            raise Invalid("weather kind")  # other kinds are refused
        out["kind"] = rec["kind"]
        for k in ("temperature_c", "precip_mm", "wind_kmh"):
            out[k] = get_num(rec, k, False)  # null counts as missing
        ia = rec.get("issued_at")
        out["issued_at"] = None if ia is None else parse_time(ia)
    elif feed == "deployment":
        if out["id"] is None:
            raise Invalid("deployment id")
        if "start" not in rec or "end" not in rec:
            raise Invalid("start/end")
        out["start"] = parse_time(rec["start"])
        out["end"] = parse_time(rec["end"])
        if out["end"] <= out["start"]:
            raise Invalid("end <= start")
        out["agents"] = get_num(rec, "agents", True, 0.0)
    return out


def read_records(path, feeds):
    """Valid records in arrival (line) order, each with its `arrival` index; and the number
    refused."""
    recs = []
    skipped = 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                raw = json.loads(line, parse_float=Decimal)
                recs.append(validate(raw, feeds))
            except (Invalid, ValueError, KeyError, TypeError, ArithmeticError):
                skipped += 1
    for i, r in enumerate(recs):
        r["arrival"] = i
    return recs, skipped


def select_counted(recs, zones):
    """Upserts in every feed: latest (ts, arrival) per (feed, id), chosen before location; a
    cancelled or unlocated winner makes the id absent. Returns (counted, number unlocated)."""
    latest = {}
    for r in recs:
        if r["id"] is None:
            continue
        key = (r["feed"], r["id"])
        cur = latest.get(key)
        if cur is None or (r["ts"], r["arrival"]) > (cur["ts"], cur["arrival"]):
            latest[key] = r
    counted = []
    unlocated = 0
    for r in recs:
        if r["id"] is not None and latest[(r["feed"], r["id"])] is not r:
            continue
        if r["cancelled"]:
            continue
        if r["feed"] != "weather" and r["zone"] not in zones:
            unlocated += 1
            continue
        counted.append(r)
    return counted, unlocated


def replay_clock(counted):
    """The greatest ts of *counted* incident and density records; none: the replay is refused."""
    clock_candidates = [r["ts"] for r in counted if r["feed"] in ("incident", "density")]
    if not clock_candidates:
        sys.exit("no counted incident or density record: no clock, replay refused")
    return max(clock_candidates)


def calendar(tz):
    """(how, week) functions of an hour index in time zone tz."""
    how_cache, week_cache = {}, {}

    def local(h):
        if h not in how_cache:
            t = dt.datetime.fromtimestamp(h * 3600, dt.timezone.utc).astimezone(tz)
            how_cache[h] = t.weekday() * 24 + t.hour
            week_cache[h] = (t.date() - EPOCH_MONDAY).days // 7
        return how_cache[h], week_cache[h]

    return (lambda h: local(h)[0]), (lambda h: local(h)[1])


def weather_tables(counted):
    """Per hour: the observed record (the last arrived) and the forecast record (greatest
    issued_at, a forecast without issued_at below any with one; ties: the last arrived)."""
    wx_obs = {}
    wx_fc = {}
    for r in counted:
        if r["feed"] != "weather":
            continue
        h = hour_of(r["ts"])
        if r["kind"] == "observed":
            cur = wx_obs.get(h)
            if cur is None or r["arrival"] > cur["arrival"]:
                wx_obs[h] = r
        else:
            cur = wx_fc.get(h)
            ia = r["issued_at"]
            key = (0 if ia is None else 1, ia if ia is not None else 0, r["arrival"])
            if cur is None or key > cur[0]:
                wx_fc[h] = (key, r)
    return wx_obs, wx_fc


def weather_rec(wx_obs, wx_fc, h):
    r = wx_obs.get(h)
    if r is None:
        fc = wx_fc.get(h)
        r = fc[1] if fc else None
    return r


def f_weather(r):
    if r is None:
        return 1.0
    t, p, w = r["temperature_c"], r["precip_mm"], r["wind_kmh"]
    return (1.0 + HEAT_W * max(0.0, (t if t is not None else HEAT_T) - HEAT_T)
            + WIND_W * (1.0 if (w is not None and w > WIND_T) else 0.0)
            - RAIN_W * (1.0 if (p is not None and p > RAIN_T) else 0.0))


def overlaps(r, h):
    return r["start"] < (h + 1) * 3600 and r["end"] > h * 3600


def per_sensor_sum(table, z, h):
    """Σ over sensors of the mean of their values in (z, h); None when there is none."""
    d = table[z].get(h)
    if not d:
        return None
    return sum(sum(v) / len(v) for v in d.values())


def typical_table(table, zones, how, week, K, W):
    """zone -> how -> mean of per_sensor_sum over the hours of weeks K-W .. K-1 with that how."""
    res = {}
    for z in zones:
        acc = {}
        for g in table[z]:
            if K - W <= week(g) <= K - 1:
                o = per_sensor_sum(table, z, g)
                if o is not None:
                    acc.setdefault(how(g), []).append(o)
        res[z] = {k: sum(v) / len(v) for k, v in acc.items()}
    return res


def clash_lines(zones, events):
    """Each unordered pair of overlapping counted events once, `a` the smaller id."""
    out = []
    for z in sorted(zones):
        evs = sorted(events[z], key=lambda e: e["id"])
        cap = zones[z]["capacity"]
        for i in range(len(evs)):
            for j in range(i + 1, len(evs)):
                a, b = evs[i], evs[j]
                if not (a["start"] < b["end"] and b["start"] < a["end"]):
                    continue
                kinds = (a["kind"], b["kind"])
                if "demonstration" in kinds:
                    reason = "demonstration"
                elif "roadworks" in kinds:
                    reason = "roadworks"
                elif a["attendance"] + b["attendance"] > cap:
                    reason = "capacity"
                else:
                    continue
                # Sub-second start/end would keep their fraction (never generated).
                out.append({"type": "clash", "zone": z, "a": a["id"], "b": b["id"],
                            "start": fmt_time(max(a["start"], b["start"])),
                            "end": fmt_time(min(a["end"], b["end"])),
                            "reason": reason})
    return out


def load_zones(path):
    with open(path) as f:
        fc = json.load(f)
    zones = {}
    for feat in fc["features"]:
        p = feat["properties"]
        zid = str(p["id"])
        zones[zid] = {
            "capacity": float(p["capacity"]),
            "scale": float(p["scale"]),
            "min_agents": int(p["min_agents"]),
            "max_agents": int(p["max_agents"]),
            "default_density": float(p["default_density"]),
        }
    return zones


def run_v1(args):
    """Model v1 (its formulas and output keys), with the precise readings shared with v2."""
    tz = ZoneInfo(args.tz)
    zones = load_zones(args.zones)
    W = args.weeks

    recs, skipped = read_records(args.records, FEEDS)
    counted, unlocated = select_counted(recs, zones)
    clock = replay_clock(counted)
    hc = hour_of(clock)
    how, week = calendar(tz)
    K = week(hc)

    # Per-zone aggregates.
    I = {z: {} for z in zones}
    N = {z: {} for z in zones}
    dens = {z: {} for z in zones}  # hour -> sensor -> [values]
    events = {z: [] for z in zones}
    deps = {z: [] for z in zones}
    for r in counted:
        f = r["feed"]
        if f == "incident":
            h = hour_of(r["ts"])
            I[r["zone"]][h] = I[r["zone"]].get(h, 0) + r["severity"]
            N[r["zone"]][h] = N[r["zone"]].get(h, 0) + 1
        elif f == "density":
            h = hour_of(r["ts"])
            dens[r["zone"]].setdefault(h, {}).setdefault(r["sensor"], []).append(r["people"])
        elif f == "event":
            events[r["zone"]].append(r)
        elif f == "deployment":
            deps[r["zone"]].append(r)
    wx_obs, wx_fc = weather_tables(counted)

    # Baseline sums and typical means per how, over weeks K-W .. K-1.
    base_sum = {z: {} for z in zones}
    for z in zones:
        for g, s in I[z].items():
            if K - W <= week(g) <= K - 1:
                base_sum[z][how(g)] = base_sum[z].get(how(g), 0) + s
    typ = typical_table(dens, zones, how, week, K, W)

    h_lo, h_hi = hc - args.past_hours, hc + args.future_hours

    def compute(z, h):
        zp = zones[z]
        cap = zp["capacity"]
        baseline = base_sum[z].get(how(h), 0) / W
        recent = I[z].get(h, 0) + I[z].get(h - 1, 0) + I[z].get(h - 2, 0)
        E = 0.0
        demo = 0
        for e in events[z]:
            if overlaps(e, h):
                E += e["attendance"]
                if e["kind"] == "demonstration":
                    demo = 1
        obs = per_sensor_sum(dens, z, h)
        if obs is not None:
            crowd = obs
        else:
            crowd = typ[z].get(how(h), zp["default_density"]) + E
        load = crowd / cap
        fw = f_weather(weather_rec(wx_obs, wx_fc, h))
        raw = ((baseline + RECENT_W * recent)
               * (1 + OVERLOAD_W * max(0.0, load - 1) + EVENT_W * E / cap)
               * fw * (1 + DEMO_W * demo))
        risk = 100 * (1 - math.exp(-raw / zp["scale"]))
        level = 1 if risk < LEVELS[0] else 2 if risk < LEVELS[1] else 3 if risk < LEVELS[2] else 4
        required = max(zp["min_agents"], math.ceil(risk / 100 * zp["max_agents"]))
        deployed = sum(d["agents"] for d in deps[z] if overlaps(d, h))
        if deployed == int(deployed):
            deployed = int(deployed)
        prot = 1.0 if required == 0 else min(1.0, deployed / required)
        return {
            "risk_score": risk, "risk_level": level, "protection_rate": float(prot),
            "required_agents": required, "deployed_agents": deployed,
            "crowd": float(crowd), "load": load, "incidents": N[z].get(h, 0),
            "contributions": {"baseline": baseline, "recent": recent, "events": float(E),
                              "weather": fw, "demonstration": demo},
        }

    out_lines = []
    for z in sorted(zones):
        risks = {}
        rows = {}
        for h in range(h_lo - 3, h_hi + 1):
            row = compute(z, h)
            risks[h] = row["risk_score"]
            rows[h] = row
        for h in range(h_lo, h_hi + 1):
            row = rows[h]
            m = (risks[h - 1] + risks[h - 2] + risks[h - 3]) / 3
            r = row["risk_score"]
            trend = "rising" if r - m > TREND_T else "falling" if m - r > TREND_T else "stable"
            line = {"type": "indicator", "zone": z, "hour": fmt_hour(h)}
            line.update(row)
            line["trend"] = trend
            out_lines.append(line)

    out_lines.extend(clash_lines(zones, events))

    with open(args.out, "w") as f:
        for line in out_lines:
            f.write(json.dumps(line) + "\n")
    print("reference v1: %d records, %d refused, %d counted, %d unlocated, clock %s, %d lines"
          % (len(recs) + skipped, skipped, len(counted), unlocated, fmt_time(clock),
             len(out_lines)), file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Model v2 ("Reference indicator model v2" and "Precise readings" of docs/model.md).
# ---------------------------------------------------------------------------------------------

RATE_KINDS = ("sport", "concert", "festival", "demonstration", "market", "official_visit",
              "filming", "other", "roadworks")
RATE_DEFAULTS = {"sport": 0.12, "concert": 0.08, "festival": 0.08, "demonstration": 0.15,
                 "market": 0.03, "official_visit": 0.05, "filming": 0.01, "other": 0.05,
                 "roadworks": 0.0}


class ZoneFileError(Exception):
    pass


# --- Polygon adjacency, exact: coordinates are the doubles of the file, compared as Fractions.

def _rings(geom, zid):
    """List of rings (lists of (Fraction, Fraction)) of a Polygon or MultiPolygon; [] if null."""
    if geom is None:
        return []
    if not isinstance(geom, dict):
        raise ZoneFileError("zone %s: geometry is not an object" % zid)
    t = geom.get("type")
    coords = geom.get("coordinates")
    if t == "Polygon":
        polys = [coords]
    elif t == "MultiPolygon":
        polys = coords
    else:
        # Chosen: zones are areas; another geometry type refuses the zone file.
        raise ZoneFileError("zone %s: unsupported geometry %r" % (zid, t))
    rings = []
    try:
        for poly in polys:
            for ring in poly:  # exterior and interior rings alike: all are boundary
                pts = []
                for pos in ring:
                    x, y = pos[0], pos[1]
                    if not (is_num(x) and is_num(y)) or not (math.isfinite(x) and math.isfinite(y)):
                        raise ZoneFileError("zone %s: bad coordinate %r" % (zid, pos))
                    pts.append((Fraction(x), Fraction(y)))
                if pts:
                    rings.append(pts)
    except (TypeError, IndexError, KeyError):
        raise ZoneFileError("zone %s: bad coordinates" % zid)
    return rings


def _segments(rings):
    segs = []
    for pts in rings:
        if len(pts) == 1:
            segs.append((pts[0], pts[0]))
            continue
        for i in range(len(pts) - 1):
            segs.append((pts[i], pts[i + 1]))
        # Chosen: a ring that is not closed (invalid GeoJSON) is closed implicitly.
        if pts[0] != pts[-1]:
            segs.append((pts[-1], pts[0]))
    return segs


def _orient(a, b, c):
    v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return (v > 0) - (v < 0)


def _on_segment(a, b, p):
    """p collinear with a-b: is it within the segment's box?"""
    return (min(a[0], b[0]) <= p[0] <= max(a[0], b[0])
            and min(a[1], b[1]) <= p[1] <= max(a[1], b[1]))


def segments_touch(p1, p2, p3, p4):
    """Do the closed segments p1-p2 and p3-p4 share at least one point? (exact)"""
    d1 = _orient(p3, p4, p1)
    d2 = _orient(p3, p4, p2)
    d3 = _orient(p1, p2, p3)
    d4 = _orient(p1, p2, p4)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    if d1 == 0 and _on_segment(p3, p4, p1):
        return True
    if d2 == 0 and _on_segment(p3, p4, p2):
        return True
    if d3 == 0 and _on_segment(p1, p2, p3):
        return True
    if d4 == 0 and _on_segment(p1, p2, p4):
        return True
    return False


def _bbox(segs):
    xs = [p[0] for s in segs for p in s]
    ys = [p[1] for s in segs for p in s]
    return min(xs), min(ys), max(xs), max(ys)


def boundaries_touch(sa, sb):
    ba, bb = _bbox(sa), _bbox(sb)
    if ba[2] < bb[0] or bb[2] < ba[0] or ba[3] < bb[1] or bb[3] < ba[1]:
        return False
    for (p1, p2) in sa:
        lo_x, hi_x = min(p1[0], p2[0]), max(p1[0], p2[0])
        lo_y, hi_y = min(p1[1], p2[1]), max(p1[1], p2[1])
        for (p3, p4) in sb:
            if max(p3[0], p4[0]) < lo_x or min(p3[0], p4[0]) > hi_x \
                    or max(p3[1], p4[1]) < lo_y or min(p3[1], p4[1]) > hi_y:
                continue
            if segments_touch(p1, p2, p3, p4):
                return True
    return False


def load_zones2(path):
    with open(path) as f:
        fc = json.load(f)
    zones = {}
    segs = {}
    explicit = {}
    for feat in fc["features"]:
        p = feat["properties"]
        zid = str(p["id"])
        if zid in zones:
            raise ZoneFileError("zone %s: duplicate id" % zid)
        zp = {
            "capacity": float(p["capacity"]),
            "scale": float(p["scale"]),
            "min_agents": int(p["min_agents"]),
            "max_agents": int(p["max_agents"]),
            "default_density": float(p["default_density"]),
            "road_capacity": None,
        }
        rc = p.get("road_capacity")
        # Chosen: `road_capacity: null` is the same as an absent key (no fluidity).
        if rc is not None:
            if not is_num(rc) or not math.isfinite(rc) or rc <= 0:
                raise ZoneFileError("zone %s: road_capacity must be a number > 0" % zid)
            zp["road_capacity"] = float(rc)
        zones[zid] = zp
        segs[zid] = _segments(_rings(feat.get("geometry"), zid))
        # Chosen: `neighbours: null` is the same as an absent key (polygon adjacency), as a null
        # field counts as missing elsewhere in the spec.
        nb = p.get("neighbours")
        if nb is not None:
            if not isinstance(nb, list):
                raise ZoneFileError("zone %s: neighbours must be a list" % zid)
            try:
                explicit[zid] = [text_id(n, "neighbour id") for n in nb]
            except Invalid:
                raise ZoneFileError("zone %s: a neighbour id is neither text nor a number" % zid)
    neighbours = {}
    for zid in zones:
        if zid in explicit:
            ns = set(explicit[zid])  # a set: duplicates ignored
            if zid in ns:
                raise ZoneFileError("zone %s lists itself as a neighbour" % zid)
            unknown = sorted(n for n in ns if n not in zones)
            if unknown:
                raise ZoneFileError("zone %s: neighbour(s) %s not in the zone file"
                                    % (zid, ", ".join(unknown)))
            neighbours[zid] = ns
        else:
            # Polygon adjacency: zones (with a geometry) whose boundary shares a point with this
            # zone's boundary; a zone with null geometry has none. Explicit lists of the other
            # zones do not matter here (the relation need not be symmetric).
            ns = set()
            if segs[zid]:
                for other in zones:
                    if other != zid and segs[other] and boundaries_touch(segs[zid], segs[other]):
                        ns.add(other)
            neighbours[zid] = ns
    return zones, neighbours


def run_v2(args):
    tz = ZoneInfo(args.tz)
    try:
        zones, neighbours = load_zones2(args.zones)
    except ZoneFileError as e:
        sys.exit("zone file refused: %s" % e)
    W = args.weeks
    rates = {k: getattr(args, "rate_" + k) for k in RATE_KINDS}

    recs, skipped = read_records(args.records, FEEDS2)
    counted, unlocated = select_counted(recs, zones)
    clock = replay_clock(counted)
    hc = hour_of(clock)
    inc_ts = [r["ts"] for r in counted if r["feed"] == "incident"]
    hL = hour_of(max(inc_ts)) if inc_ts else None

    how, week = calendar(tz)
    K = week(hc)

    sev = {z: {} for z in zones}     # Σ severity per hour
    N = {z: {} for z in zones}       # number of incidents per hour
    C = {z: {} for z in zones}       # number of calls per hour
    dens = {z: {} for z in zones}    # hour -> sensor -> [people]
    traf = {z: {} for z in zones}    # hour -> sensor -> [volume]
    events = {z: [] for z in zones}
    deps = {z: [] for z in zones}
    for r in counted:
        f = r["feed"]
        if f == "incident":
            h = hour_of(r["ts"])
            sev[r["zone"]][h] = sev[r["zone"]].get(h, 0) + r["severity"]
            N[r["zone"]][h] = N[r["zone"]].get(h, 0) + 1
        elif f == "call":
            h = hour_of(r["ts"])
            C[r["zone"]][h] = C[r["zone"]].get(h, 0) + 1
        elif f == "density":
            h = hour_of(r["ts"])
            dens[r["zone"]].setdefault(h, {}).setdefault(r["sensor"], []).append(r["people"])
        elif f == "traffic":
            h = hour_of(r["ts"])
            traf[r["zone"]].setdefault(h, {}).setdefault(r["sensor"], []).append(r["volume"])
        elif f == "event":
            events[r["zone"]].append(r)
        elif f == "deployment":
            deps[r["zone"]].append(r)
    wx_obs, wx_fc = weather_tables(counted)

    cw = args.call_weight

    def I(z, h):
        return sev[z].get(h, 0) + cw * C[z].get(h, 0)

    base_sum = {z: {} for z in zones}
    for z in zones:
        for g in set(sev[z]) | set(C[z]):
            if K - W <= week(g) <= K - 1:
                base_sum[z][how(g)] = base_sum[z].get(how(g), 0) + I(z, g)
    typ = typical_table(dens, zones, how, week, K, W)
    ttyp = typical_table(traf, zones, how, week, K, W)

    h_lo, h_hi = hc - args.past_hours, hc + args.future_hours
    hours = range(h_lo - 3, h_hi + 1)

    # Pass 1: E, X, demo per zone and hour (spill needs the neighbours' X).
    EXD = {}
    for z in zones:
        for h in hours:
            E = 0.0
            X = 0.0
            demo = 0
            for e in events[z]:
                if overlaps(e, h):
                    E += e["attendance"]
                    X += e["attendance"] / 1000 * rates[e["kind"]]
                    if e["kind"] == "demonstration":
                        demo = 1
            EXD[(z, h)] = (E, X, demo)

    def fluidity_of(traffic, rc):
        if traffic is None or rc is None:
            return None, None
        vc = traffic / rc
        # vc ** exponent (C pow), not vc*vc*vc*vc: the two may differ in the last bit only.
        fl = 1 / (1 + args.bpr_alpha * vc ** args.bpr_exponent)
        level = (1 if fl >= args.fluidity_level1 else 2 if fl >= args.fluidity_level2
                 else 3 if fl >= args.fluidity_level3 else 4)
        return fl, level

    def compute(z, h):
        zp = zones[z]
        cap = zp["capacity"]
        baseline = base_sum[z].get(how(h), 0) / W
        recent = I(z, h) + I(z, h - 1) + I(z, h - 2)
        E, X, demo = EXD[(z, h)]
        spill = args.spill_share * sum(EXD[(n, h)][1] for n in sorted(neighbours[z]))
        obs = per_sensor_sum(dens, z, h)
        typical = typ[z].get(how(h), zp["default_density"])
        if obs is not None:
            crowd = obs
            surge = args.surge_rate * max(0.0, obs - typical) / 1000
        else:
            crowd = typical + E
            surge = 0.0
        exposure = X + spill + surge
        load = crowd / cap
        wrec = weather_rec(wx_obs, wx_fc, h)
        fw = f_weather(wrec)
        raw = ((baseline + RECENT_W * recent + exposure)
               * (1 + OVERLOAD_W * max(0.0, load - 1))
               * fw * (1 + DEMO_W * demo))
        risk = 100 * (1 - math.exp(-raw / zp["scale"]))
        level = 1 if risk < LEVELS[0] else 2 if risk < LEVELS[1] else 3 if risk < LEVELS[2] else 4
        required = max(zp["min_agents"], math.ceil(risk / 100 * zp["max_agents"]))
        deployed = sum(d["agents"] for d in deps[z] if overlaps(d, h))
        if deployed == int(deployed):
            deployed = int(deployed)
        prot = 1.0 if required == 0 else min(1.0, deployed / required)
        shortfall = required - deployed
        if level == 4 and shortfall > 0:
            crit = 4
        elif (level >= 3 and shortfall > 0) or level == 4:
            crit = 3
        elif (level >= 2 and shortfall > 0) or level == 3:
            crit = 2
        else:
            crit = 1
        tobs = per_sensor_sum(traf, z, h)
        if tobs is not None:
            traffic = tobs
        elif how(h) in ttyp[z]:
            traffic = ttyp[z][how(h)] + args.vehicles_per_attendee * E
        else:
            traffic = None
        fl, fl_level = fluidity_of(traffic, zp["road_capacity"])
        missing = []
        if h <= hc and obs is None and how(h) in typ[z]:
            missing.append("density")
        if h <= hc and (hL is None or (hL < hc - args.stale_incident_hours and h > hL)):
            missing.append("incident")
        if h not in wx_obs and h not in wx_fc:
            missing.append("weather")
        confidence = ("high", "reduced", "low", "low")[len(missing)]
        return {
            "risk_score": risk, "risk_level": level, "protection_rate": float(prot),
            "required_agents": required, "deployed_agents": deployed,
            "crowd": float(crowd), "load": load, "incidents": N[z].get(h, 0),
            "contributions": {"baseline": baseline, "recent": recent, "events": float(E),
                              "weather": fw, "demonstration": demo,
                              "exposure": exposure, "spill": spill, "surge": surge},
            "calls": C[z].get(h, 0), "criticality": crit,
            "traffic": None if traffic is None else float(traffic),
            "fluidity": fl, "fluidity_level": fl_level,
            "confidence": confidence, "missing": missing,
        }

    def trend_of(x, prev, tau):
        m = (prev[0] + prev[1] + prev[2]) / 3
        return "rising" if x - m > tau else "falling" if m - x > tau else "stable"

    out_lines = []
    for z in sorted(zones):
        rows = {h: compute(z, h) for h in hours}
        for h in range(h_lo, h_hi + 1):
            row = rows[h]
            prev = [rows[h - 1], rows[h - 2], rows[h - 3]]
            trend = trend_of(row["risk_score"], [p["risk_score"] for p in prev], TREND_T)
            load_trend = trend_of(row["load"], [p["load"] for p in prev], args.load_trend_tau)
            fls = [p["fluidity"] for p in prev]
            if row["fluidity"] is None or None in fls:
                fl_trend = None
            else:
                fl_trend = trend_of(row["fluidity"], fls, args.fluidity_trend_tau)
            line = {"type": "indicator", "zone": z, "hour": fmt_hour(h)}
            for k in ("risk_score", "risk_level", "protection_rate", "required_agents",
                      "deployed_agents", "crowd", "load", "incidents", "contributions"):
                line[k] = row[k]
            line["trend"] = trend
            for k in ("calls", "criticality", "traffic", "fluidity", "fluidity_level"):
                line[k] = row[k]
            line["load_trend"] = load_trend
            line["fluidity_trend"] = fl_trend
            line["confidence"] = row["confidence"]
            line["missing"] = row["missing"]
            out_lines.append(line)

    out_lines.extend(clash_lines(zones, events))  # clashes: as in v1

    with open(args.out, "w") as f:
        for line in out_lines:
            f.write(json.dumps(line) + "\n")
    print("reference v2: %d records, %d refused, %d counted, %d unlocated, clock %s, %d lines"
          % (len(recs) + skipped, skipped, len(counted), unlocated, fmt_time(clock),
             len(out_lines)), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=int, choices=(1, 2), default=2)
    ap.add_argument("--zones", required=True)
    ap.add_argument("--tz", default="Europe/Paris")
    ap.add_argument("--records", required=True)
    ap.add_argument("--weeks", type=int, default=52)
    ap.add_argument("--past-hours", type=int, default=168)
    ap.add_argument("--future-hours", type=int, default=720)
    ap.add_argument("--out", required=True)
    v2 = ap.add_argument_group("model v2 coefficients (ignored with --model 1)")
    v2.add_argument("--call-weight", type=float, default=0.25)
    for k in RATE_KINDS:
        v2.add_argument("--rate-" + k.replace("_", "-"), dest="rate_" + k, type=float,
                        default=RATE_DEFAULTS[k])
    v2.add_argument("--spill-share", type=float, default=0.25)
    v2.add_argument("--surge-rate", type=float, default=0.05)
    v2.add_argument("--vehicles-per-attendee", type=float, default=0.1)
    v2.add_argument("--stale-incident-hours", type=int, default=6)
    v2.add_argument("--fluidity-level1", type=float, default=0.9,
                    help="fluidity >= this: level 1")
    v2.add_argument("--fluidity-level2", type=float, default=0.75,
                    help="fluidity >= this: level 2")
    v2.add_argument("--fluidity-level3", type=float, default=0.5,
                    help="fluidity >= this: level 3, below: 4")
    v2.add_argument("--bpr-alpha", type=float, default=0.15)
    v2.add_argument("--bpr-exponent", type=float, default=4.0)
    v2.add_argument("--load-trend-tau", type=float, default=0.05)
    v2.add_argument("--fluidity-trend-tau", type=float, default=0.05)
    args = ap.parse_args()
    if args.model == 1:
        run_v1(args)
    else:
        run_v2(args)


if __name__ == "__main__":
    main()
