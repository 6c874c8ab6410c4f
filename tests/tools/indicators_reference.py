#!/usr/bin/env python3
"""Independent reference implementation of the indicator model v1 (docs/model.md).

Written from the specification text only, to cross-check the engine's `replay` output.

Usage:
    python3 indicators_reference.py --zones ZONES.geojson --tz Europe/Paris \
        --records RECORDS.ndjson [--weeks 52 --past-hours 168 --future-hours 720] --out OUT.ndjson

Records are located by `zone` only (lat/lon is not mapped). Arrival order is the line order.
Timestamps are kept exact (Decimal) so that ties and hour buckets do not suffer from rounding.
"""

import argparse
import datetime as dt
import json
import math
import sys
from decimal import Decimal
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


def validate(rec):
    """Return a normalised dict or raise Invalid."""
    if not isinstance(rec, dict):
        raise Invalid("not an object")
    feed = rec.get("feed")
    if feed not in FEEDS:
        raise Invalid("feed")
    if "ts" not in rec:
        raise Invalid("ts")
    out = {"feed": feed, "ts": parse_time(rec["ts"])}
    rid = rec.get("id")
    if rid is not None:
        if not isinstance(rid, str):
            if is_num(rid):
                rid = str(rid)
            else:
                raise Invalid("id")
    out["id"] = rid
    status = rec.get("status")
    if status == "cancelled":
        if rid is None:
            raise Invalid("cancelled without id")
        out["cancelled"] = True
        return out
    out["cancelled"] = False
    if feed != "weather":
        z = rec.get("zone")
        if not isinstance(z, str):
            if is_num(z):
                z = str(z)
            else:
                raise Invalid("zone (lat/lon not supported by the reference)")
        out["zone"] = z
    if feed == "incident":
        sev = rec.get("severity")
        if isinstance(sev, bool) or not isinstance(sev, int) or not 1 <= sev <= 5:
            raise Invalid("severity")
        out["severity"] = sev
    elif feed == "density":
        out["people"] = get_num(rec, "people", True, 0.0)
        s = rec.get("sensor")
        out["sensor"] = None if s is None else json.dumps(s, sort_keys=True)
    elif feed == "event":
        if rid is None:
            raise Invalid("event id")
        out["start"] = parse_time(rec["start"]) if "start" in rec else None
        out["end"] = parse_time(rec["end"]) if "end" in rec else None
        if out["start"] is None or out["end"] is None:
            raise Invalid("start/end")
        out["attendance"] = get_num(rec, "attendance", True, 0.0)
        if rec.get("kind") not in EVENT_KINDS:
            raise Invalid("kind")
        out["kind"] = rec["kind"]
    elif feed == "weather":
        if rec.get("kind") not in ("observed", "forecast"):
            raise Invalid("weather kind")
        out["kind"] = rec["kind"]
        for k in ("temperature_c", "precip_mm", "wind_kmh"):
            out[k] = get_num(rec, k, False)
        ia = rec.get("issued_at")
        out["issued_at"] = None if ia is None else parse_time(ia)
    elif feed == "deployment":
        if rid is None:
            raise Invalid("deployment id")
        if "start" not in rec or "end" not in rec:
            raise Invalid("start/end")
        out["start"] = parse_time(rec["start"])
        out["end"] = parse_time(rec["end"])
        out["agents"] = get_num(rec, "agents", True, 0.0)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zones", required=True)
    ap.add_argument("--tz", default="Europe/Paris")
    ap.add_argument("--records", required=True)
    ap.add_argument("--weeks", type=int, default=52)
    ap.add_argument("--past-hours", type=int, default=168)
    ap.add_argument("--future-hours", type=int, default=720)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    tz = ZoneInfo(args.tz)
    zones = load_zones(args.zones)
    W = args.weeks

    recs = []
    skipped = 0
    with open(args.records) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                raw = json.loads(line, parse_float=Decimal)
                recs.append(validate(raw))
            except (Invalid, ValueError, KeyError, TypeError, ArithmeticError):
                skipped += 1
    for i, r in enumerate(recs):
        r["arrival"] = i

    # The clock: greatest ts of all (valid) incident and density records.
    clock_candidates = [r["ts"] for r in recs if r["feed"] in ("incident", "density")]
    if not clock_candidates:
        sys.exit("no incident or density record: no clock")
    clock = max(clock_candidates)
    hc = hour_of(clock)

    # Upserts: latest (ts, arrival) per (feed, id).
    latest = {}
    for r in recs:
        if r["id"] is None:
            continue
        key = (r["feed"], r["id"])
        cur = latest.get(key)
        if cur is None or (r["ts"], r["arrival"]) > (cur["ts"], cur["arrival"]):
            latest[key] = r
    counted = []
    for r in recs:
        if r["id"] is not None and latest[(r["feed"], r["id"])] is not r:
            continue
        if r["cancelled"]:
            continue
        if r["feed"] != "weather" and r["zone"] not in zones:
            continue  # in no zone: counted and excluded
        counted.append(r)

    # Local time helpers.
    how_cache, week_cache = {}, {}

    def local(h):
        if h not in how_cache:
            t = dt.datetime.fromtimestamp(h * 3600, dt.timezone.utc).astimezone(tz)
            how_cache[h] = t.weekday() * 24 + t.hour
            week_cache[h] = (t.date() - EPOCH_MONDAY).days // 7
        return how_cache[h], week_cache[h]

    def how(h):
        return local(h)[0]

    def week(h):
        return local(h)[1]

    K = week(hc)

    # Per-zone aggregates.
    I = {z: {} for z in zones}
    N = {z: {} for z in zones}
    dens = {z: {} for z in zones}  # hour -> sensor -> [values]
    events = {z: [] for z in zones}
    deps = {z: [] for z in zones}
    wx_obs = {}
    wx_fc = {}
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
        elif f == "weather":
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

    def observed(z, h):
        d = dens[z].get(h)
        if not d:
            return None
        return sum(sum(v) / len(v) for v in d.values())

    # Baseline sums and typical means per how, over weeks K-W .. K-1.
    base_sum = {z: {} for z in zones}
    for z in zones:
        for g, s in I[z].items():
            if K - W <= week(g) <= K - 1:
                base_sum[z][how(g)] = base_sum[z].get(how(g), 0) + s
    typ = {z: {} for z in zones}
    for z in zones:
        acc = {}
        for g in dens[z]:
            if K - W <= week(g) <= K - 1:
                o = observed(z, g)
                if o is not None:
                    acc.setdefault(how(g), []).append(o)
        typ[z] = {k: sum(v) / len(v) for k, v in acc.items()}

    def f_weather(h):
        r = wx_obs.get(h)
        if r is None:
            fc = wx_fc.get(h)
            r = fc[1] if fc else None
        if r is None:
            return 1.0
        t, p, w = r["temperature_c"], r["precip_mm"], r["wind_kmh"]
        return (1.0 + HEAT_W * max(0.0, (t if t is not None else HEAT_T) - HEAT_T)
                + WIND_W * (1.0 if (w is not None and w > WIND_T) else 0.0)
                - RAIN_W * (1.0 if (p is not None and p > RAIN_T) else 0.0))

    def overlaps(r, h):
        return r["start"] < (h + 1) * 3600 and r["end"] > h * 3600

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
        obs = observed(z, h)
        if obs is not None:
            crowd = obs
        else:
            crowd = typ[z].get(how(h), zp["default_density"]) + E
        load = crowd / cap
        fw = f_weather(h)
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

    # Clashes.
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
                out_lines.append({"type": "clash", "zone": z, "a": a["id"], "b": b["id"],
                                  "start": fmt_time(max(a["start"], b["start"])),
                                  "end": fmt_time(min(a["end"], b["end"])),
                                  "reason": reason})

    with open(args.out, "w") as f:
        for line in out_lines:
            f.write(json.dumps(line) + "\n")
    print("reference: %d records, %d skipped, %d counted, clock %s, %d lines"
          % (len(recs) + skipped, skipped, len(counted), fmt_time(clock), len(out_lines)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
