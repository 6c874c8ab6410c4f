#!/usr/bin/env python3
"""Random NDJSON records for cross-checking the engine against indicators_reference.py.

Usage: python3 gen_records.py [--model {1,2}] --seed N --n COUNT --out FILE
           [--start 2026-10-01T00:00:00Z --days 42 --future-days 10 --invalid 0.01
            --zones-out ZONES.geojson]
           [v2 only: --incident-gap-hours 30 --silent-density-days 4]

--model 1: today's v1 mix, byte for byte (same seed, same output). Zones z0, z1, z2. All five
feeds; upserts (repeated ids, some with equal ts written in different forms), cancellations,
events of every kind, weather observed and forecast (with and without issued_at), deployments,
densities with and without `sensor`; timestamps as RFC 3339 (Z, offsets, fractions) or unix
seconds (integer or fractional). The default span (October-November 2026) contains the end of
summer time in Europe/Paris. With --invalid > 0 a fraction of lines is unambiguously invalid
(unknown feed, no ts, severity 9, negative people, unknown kind, non-JSON).

--model 2 (the default): the seven feeds of model v2 over 19 zones (see ZONES2): square and other
polygons on a small lon/lat grid whose adjacency comes from shared edges, corners, a vertex on an
edge, an interior ring and a MultiPolygon part (and a near miss), zones with an explicit
`neighbours` list (asymmetric, duplicates, `[]`, naming a zone without geometry), zones with and
without `road_capacity` and one without geometry. Calls with and without id (some cancelled,
some numeric ids written as number or text); traffic with/without `sensor` (also null and ""),
integer and float volumes, some upserts and cancellations; ids on some densities and weather
records. The incident feed falls silent --incident-gap-hours before the end, the densities of
two zones --silent-density-days before, weather has a two-day hole and sometimes null fields;
"stade" and "far" get events (sport/concert 20,000-80,000) but no incident, call or density.
Invalid lines also include negative volume, traffic without volume, a call without ts and
end <= start for an event and a deployment.
"""

import argparse
import datetime as dt
import json
import random

ZONES = [
    # id, capacity, scale, min_agents, max_agents, default_density
    ("z0", 500, 5.0, 1, 8, 300),
    ("z1", 2000, 10.0, 0, 4, 2500),
    ("z2", 120, 2.5, 2, 20, 60),
]
KINDS = ["market", "festival", "sport", "concert", "demonstration", "official_visit",
         "filming", "roadworks", "other"]


def zones_geojson():
    feats = []
    for zid, cap, scale, mn, mx, dd in ZONES:
        feats.append({"type": "Feature", "geometry": None, "properties": {
            "id": zid, "name": "Zone " + zid, "capacity": cap, "scale": scale,
            "min_agents": mn, "max_agents": mx, "default_density": dd}})
    return {"type": "FeatureCollection", "features": feats}


def gen_v1(args):
    """Today's v1 mix, unchanged (same seed, same bytes)."""
    rng = random.Random(args.seed)

    t0 = int(dt.datetime.fromisoformat(args.start.replace("Z", "+00:00")).timestamp())
    t_end = t0 + int(args.days * 86400)
    t_fut = t_end + int(args.future_days * 86400)

    def fmt(t):
        """A random representation of integer-or-quarter second t."""
        c = rng.random()
        if c < 0.2 and t == int(t):
            return int(t)
        if c < 0.3:
            return float(t)
        whole = int(t // 1)
        frac = t - whole
        off = rng.choice([0, 0, 0, 3600, 7200, -18000, 19800])
        loc = dt.datetime.fromtimestamp(whole, dt.timezone(dt.timedelta(seconds=off)))
        s = loc.strftime("%Y-%m-%dT%H:%M:%S")
        if frac:
            s += ("%.2f" % frac)[1:]
        elif rng.random() < 0.1:
            s += ".000"
        if off == 0 and rng.random() < 0.8:
            return s + "Z"
        sign = "+" if off >= 0 else "-"
        a = abs(off)
        return s + "%s%02d:%02d" % (sign, a // 3600, (a % 3600) // 60)

    def rand_t(lo, hi):
        t = rng.randrange(lo, hi)
        if rng.random() < 0.1:
            t += rng.choice([0.25, 0.5, 0.75])
        return t

    lines = []
    ids = {"incident": [], "event": [], "deployment": []}

    def new_or_old(feed, prefix, p_old):
        pool = ids[feed]
        if pool and rng.random() < p_old:
            return rng.choice(pool), True
        i = "%s-%d" % (prefix, len(pool))
        pool.append(i)
        return i, False

    last_ts = {}

    def upsert_ts(feed, rid, lo, hi):
        # Sometimes exactly repeat the previous ts of this id (a tie: the last arrived wins).
        if (feed, rid) in last_ts and rng.random() < 0.3:
            return last_ts[(feed, rid)]
        t = rand_t(lo, hi)
        last_ts[(feed, rid)] = t
        return t

    for _ in range(args.n):
        if rng.random() < args.invalid:
            bad = rng.choice([
                '{"feed":"traffic","ts":"2026-10-05T10:00:00Z","zone":"z0","severity":2}',
                '{"feed":"incident","zone":"z1","severity":2}',
                '{"feed":"incident","ts":"2026-10-05T10:00:00Z","zone":"z1","severity":9}',
                '{"feed":"density","ts":"2026-10-05T10:00:00Z","zone":"z2","people":-4}',
                '{"feed":"event","ts":"2026-10-05T10:00:00Z","id":"bad-1","zone":"z0",'
                '"start":"2026-10-06T10:00:00Z","end":"2026-10-06T12:00:00Z",'
                '"attendance":100,"kind":"party"}',
                '{"feed":"incident","ts":"2026-10-05T10:00:00Z",',
            ])
            lines.append(bad)
            continue
        feed = rng.choices(["incident", "density", "event", "weather", "deployment"],
                           [30, 35, 12, 13, 10])[0]
        zone = rng.choice(ZONES)[0]
        if feed == "incident":
            rec = {"feed": "incident", "source": "gen"}
            if rng.random() < 0.4:
                rid, old = new_or_old("incident", "inc", 0.4)
                t = upsert_ts("incident", rid, t0, t_end)
                rec["id"] = rid
                if old and rng.random() < 0.25:
                    lines.append(json.dumps({"feed": "incident", "ts": fmt(t), "id": rid,
                                             "status": "cancelled"}))
                    continue
            else:
                t = rand_t(t0, t_end)
            rec.update({"ts": fmt(t), "zone": zone, "severity": rng.randint(1, 5)})
            if rng.random() < 0.5:
                rec["category"] = rng.choice(["theft", "assault", "fire", "traffic"])
            if rng.random() < 0.1:
                rec["status"] = "open"
        elif feed == "density":
            t = rand_t(t0, t_end)
            people = rng.choice([rng.randint(0, 3000), round(rng.uniform(0, 3000), 2)])
            rec = {"feed": "density", "ts": fmt(t), "zone": zone, "people": people}
            if rng.random() < 0.6:
                rec["sensor"] = rng.choice(["s1", "s2", "s3"])
        elif feed == "event":
            rid, old = new_or_old("event", "ev", 0.35)
            start = rng.randrange(t0 - 2 * 86400, t_fut) // 900 * 900
            end = start + rng.choice([1800, 3600, 5400, 7200, 3 * 3600, 6 * 3600, 86400,
                                      3 * 86400])
            pub = upsert_ts("event", rid, t0 - 3 * 86400, t_end)
            if old and rng.random() < 0.2:
                lines.append(json.dumps({"feed": "event", "ts": fmt(pub), "id": rid,
                                         "status": "cancelled"}))
                continue
            rec = {"feed": "event", "ts": fmt(pub), "id": rid, "zone": zone,
                   "start": fmt(start), "end": fmt(end),
                   "attendance": rng.choice([rng.randint(0, 300), rng.randint(0, 3000)]),
                   "kind": rng.choice(KINDS)}
        elif feed == "weather":
            hour = rng.randrange(t0, t_fut) // 3600 * 3600
            t = hour + rng.choice([0, 0, 0, 600, 1800])
            rec = {"feed": "weather", "ts": fmt(t)}
            if t <= t_end and rng.random() < 0.5:
                rec["kind"] = "observed"
            else:
                rec["kind"] = "forecast"
                if rng.random() < 0.8:
                    rec["issued_at"] = fmt(hour - rng.choice([1, 2, 3, 6, 12, 24]) * 3600)
            for k, lo, hi in (("temperature_c", -5, 40), ("precip_mm", 0, 6), ("wind_kmh", 0, 90)):
                if rng.random() < 0.75:
                    rec[k] = round(rng.uniform(lo, hi), 1)
        else:
            rid, old = new_or_old("deployment", "dep", 0.35)
            start = rng.randrange(t0 - 86400, t_fut) // 1800 * 1800
            end = start + rng.choice([3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400])
            pub = upsert_ts("deployment", rid, t0 - 2 * 86400, t_end)
            if old and rng.random() < 0.2:
                lines.append(json.dumps({"feed": "deployment", "ts": fmt(pub), "id": rid,
                                         "status": "cancelled"}))
                continue
            rec = {"feed": "deployment", "ts": fmt(pub), "id": rid, "zone": zone,
                   "start": fmt(start), "end": fmt(end), "agents": rng.randint(0, 12)}
        lines.append(json.dumps(rec))

    with open(args.out, "w") as f:
        for line in lines:
            f.write(line + "\n")
    if args.zones_out:
        with open(args.zones_out, "w") as f:
            json.dump(zones_geojson(), f, indent=1)
            f.write("\n")


# ---------------------------------------------------------------------------------------------
# Model v2 generation.
# ---------------------------------------------------------------------------------------------

LON0, LAT0, STEP = 5.36, 43.28, 0.005


def _pt(i, j):
    """Grid point (i, j) in lon/lat; the same (i, j) always gives the same doubles."""
    return [round(LON0 + i * STEP, 6), round(LAT0 + j * STEP, 6)]


def _rect(i0, j0, i1, j1, reverse=False):
    ring = [_pt(i0, j0), _pt(i1, j0), _pt(i1, j1), _pt(i0, j1), _pt(i0, j0)]
    return ring[::-1] if reverse else ring


def _poly(*rings):
    return {"type": "Polygon", "coordinates": list(rings)}


# id, capacity, scale, min_agents, max_agents, default_density, road_capacity or None,
# neighbours (None = key absent: polygon adjacency), geometry.
# Adjacency expected from the polygons (grid cell (i, j) = [i, i+1] x [j, j+1]):
#   g00-g10 edge; g00-long collinear edge part; g00,g10-wide edge parts; g10-stade edge;
#   g21-stade edge; g00-stade and g10-g21 and g10-tee corner only; tee-wide edge; tee-tri a
#   vertex in the middle of an edge; tee-z0 edge; g21-mid collinear part; gap: a near miss (none);
#   donut (MultiPolygon with a hole) - core through the interior ring, donut - far through its
#   second polygon; inner sits in the hole touching nothing; z1-z3 edge (z1 lists []);
#   nogeo has no geometry (no adjacency); z2 has no geometry but an explicit list.
ZONES2 = [
    ("g00", 800, 5.0, 1, 8, 300, 1800, None, _poly(_rect(0, 0, 1, 1))),
    ("g10", 1500, 8.0, 0, 6, 900, 2400, None, _poly(_rect(1, 0, 2, 1, True))),
    ("g21", 600, 4.0, 1, 5, 200, None, None, _poly(_rect(2, 1, 3, 2))),
    ("stade", 20000, 20.0, 0, 40, 50, 3000, None, _poly(_rect(1, 1, 2, 2))),
    ("wide", 2500, 10.0, 0, 10, 1200, 2000, None, _poly(_rect(0, -1, 2, 0))),
    ("tee", 400, 3.0, 0, 4, 100, None, None, _poly(_rect(2, -1, 3, 0))),
    ("tri", 300, 3.0, 1, 3, 80, None, None,
     _poly([_pt(2, -2), _pt(3, -2), _pt(2.5, -1), _pt(2, -2)])),
    ("long", 700, 5.0, 0, 5, 350, None, None, _poly(_rect(-1, 0, 0, 2))),
    ("mid", 500, 4.0, 0, 4, 250, 1500, None, _poly(_rect(3, 0.5, 4, 1.5))),
    ("gap", 450, 4.0, 0, 4, 200, None, None, _poly(_rect(3.02, 1.6, 4, 2.6))),
    ("donut", 5000, 12.0, 2, 12, 2000, None, None,
     {"type": "MultiPolygon", "coordinates": [
         [_rect(10, 0, 14, 4), _rect(11, 1, 13, 3, True)],
         [_rect(20, 0, 21, 1)]]}),
    ("core", 900, 6.0, 0, 6, 400, 1600, None, _poly(_rect(11, 1, 12, 2))),
    ("inner", 200, 2.0, 0, 2, 50, None, None, _poly(_rect(12.4, 2.2, 12.8, 2.6))),
    ("far", 1000, 6.0, 0, 5, 300, None, None, _poly(_rect(21, 0, 22, 1))),
    ("nogeo", 1200, 6.0, 1, 6, 500, 2200, None, None),
    ("z0", 500, 5.0, 1, 8, 300, None, ["z1", "z1", "g00"], _poly(_rect(3, -1, 4, 0))),
    ("z1", 2000, 10.0, 0, 4, 2500, 2500, [], _poly(_rect(5, 0, 6, 1))),
    ("z2", 120, 2.5, 2, 20, 60, 900, ["z0", "nogeo", "stade", "nogeo"], None),
    ("z3", 800, 5.0, 0, 5, 400, 1200, None, _poly(_rect(6, 0, 7, 1))),
]
ZONE2_IDS = [z[0] for z in ZONES2]
ZONE2 = {z[0]: z for z in ZONES2}
# Which zones get which feed ("stade" and "far" have no incident, call or density: their risk
# comes from exposure only).
INC_ZONES = [z for z in ZONE2_IDS if z not in ("stade", "far")]
CALL_ZONES = INC_ZONES
DENS_ZONES = [z for z in ZONE2_IDS if z not in ("stade", "far", "nogeo", "inner")]
SILENT_DENS_ZONES = ("g10", "z2")  # their densities stop --silent-density-days before the end
TRAFFIC_ZONES = ["g00", "g10", "stade", "wide", "core", "far", "z1", "z2", "z3", "nogeo", "mid"]


def zones_geojson2():
    feats = []
    for zid, cap, scale, mn, mx, dd, rc, nb, geom in ZONES2:
        props = {"id": zid, "name": "Zone " + zid, "capacity": cap, "scale": scale,
                 "min_agents": mn, "max_agents": mx, "default_density": dd}
        if rc is not None:
            props["road_capacity"] = rc
        if nb is not None:
            props["neighbours"] = nb
        feats.append({"type": "Feature", "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": feats}


def gen_v2(args):
    rng = random.Random(args.seed)
    t0 = int(dt.datetime.fromisoformat(args.start.replace("Z", "+00:00")).timestamp())
    t_end = t0 + int(args.days * 86400)
    t_fut = t_end + int(args.future_days * 86400)
    t_inc_end = t_end - int(args.incident_gap_hours * 3600)   # the incident feed falls silent
    t_dens_end = t_end - int(args.silent_density_days * 86400)
    wx_gap = (t_end - 10 * 86400, t_end - 8 * 86400)           # no weather record at all

    def fmt(t):
        """A random representation of integer-or-quarter second t."""
        c = rng.random()
        if c < 0.2 and t == int(t):
            return int(t)
        if c < 0.3:
            return float(t)
        whole = int(t // 1)
        frac = t - whole
        off = rng.choice([0, 0, 0, 3600, 7200, -18000, 19800])
        loc = dt.datetime.fromtimestamp(whole, dt.timezone(dt.timedelta(seconds=off)))
        s = loc.strftime("%Y-%m-%dT%H:%M:%S")
        if frac:
            s += ("%.2f" % frac)[1:]
        elif rng.random() < 0.1:
            s += ".000"
        if off == 0 and rng.random() < 0.8:
            return s + "Z"
        sign = "+" if off >= 0 else "-"
        a = abs(off)
        return s + "%s%02d:%02d" % (sign, a // 3600, (a % 3600) // 60)

    def rand_t(lo, hi):
        t = rng.randrange(lo, hi)
        if rng.random() < 0.1:
            t += rng.choice([0.25, 0.5, 0.75])
        return t

    lines = []
    ids = {}
    last_ts = {}

    def new_or_old(feed, prefix, p_old):
        pool = ids.setdefault(feed, [])
        if pool and rng.random() < p_old:
            return rng.choice(pool), True
        i = "%s-%d" % (prefix, len(pool))
        # Some whole-number ids, written as a number or as text (the same id).
        if feed in ("call", "traffic") and rng.random() < 0.2:
            i = 1000 + len(pool)
        pool.append(i)
        return i, False

    def id_form(rid):
        if isinstance(rid, int) and rng.random() < 0.5:
            return str(rid)
        return rid

    def upsert_ts(feed, rid, lo, hi):
        if (feed, rid) in last_ts and rng.random() < 0.3:
            return last_ts[(feed, rid)]  # a tie: the last arrived wins
        t = rand_t(lo, hi)
        last_ts[(feed, rid)] = t
        return t

    def cancel_line(feed, t, rid):
        lines.append(json.dumps({"feed": feed, "ts": fmt(t), "id": id_form(rid),
                                 "status": "cancelled"}))

    def sensor_field(rec, names):
        c = rng.random()
        if c < 0.3:
            return  # no sensor key: the unnamed sensor
        if c < 0.4:
            rec["sensor"] = None  # also the unnamed sensor
        elif c < 0.5:
            rec["sensor"] = ""    # also the unnamed sensor
        else:
            rec["sensor"] = rng.choice(names)

    def event_size(zone, kind):
        if zone == "stade" and kind in ("sport", "concert"):
            return rng.randint(20000, 80000)
        if kind == "sport" and rng.random() < 0.3:
            return rng.randint(20000, 80000)
        if kind in ("festival", "concert", "demonstration") and rng.random() < 0.3:
            return rng.randint(2000, 15000)
        return rng.choice([rng.randint(0, 300), rng.randint(0, 3000)])

    invalid_lines = [
        '{"feed":"traffic","ts":"2026-10-05T10:00:00Z","zone":"z0","severity":2}',
        '{"feed":"incident","zone":"z1","severity":2}',
        '{"feed":"incident","ts":"2026-10-05T10:00:00Z","zone":"z1","severity":9}',
        '{"feed":"density","ts":"2026-10-05T10:00:00Z","zone":"z2","people":-4}',
        '{"feed":"event","ts":"2026-10-05T10:00:00Z","id":"bad-1","zone":"z0",'
        '"start":"2026-10-06T10:00:00Z","end":"2026-10-06T12:00:00Z",'
        '"attendance":100,"kind":"party"}',
        '{"feed":"incident","ts":"2026-10-05T10:00:00Z",',
        # v2
        '{"feed":"traffic","ts":"2026-10-05T10:00:00Z","zone":"g00","volume":-12}',
        '{"feed":"traffic","ts":"2026-10-05T10:00:00Z","zone":"g00","sensor":"t1"}',
        '{"feed":"traffic","ts":"2026-10-05T10:00:00Z","zone":"g10","volume":null}',
        '{"feed":"call","zone":"g00","category":"noise"}',
        '{"feed":"event","ts":"2026-10-05T10:00:00Z","id":"bad-2","zone":"stade",'
        '"start":"2026-10-06T10:00:00Z","end":"2026-10-06T10:00:00Z",'
        '"attendance":50000,"kind":"sport"}',
        '{"feed":"deployment","ts":"2026-10-05T10:00:00Z","id":"bad-3","zone":"g00",'
        '"start":"2026-10-06T12:00:00Z","end":"2026-10-06T10:00:00Z","agents":3}',
    ]

    feeds = ["incident", "call", "density", "traffic", "event", "weather", "deployment"]
    weights = [20, 12, 25, 15, 10, 10, 8]
    for _ in range(args.n):
        if rng.random() < args.invalid:
            lines.append(rng.choice(invalid_lines))
            continue
        feed = rng.choices(feeds, weights)[0]
        if feed == "incident":
            zone = rng.choice(INC_ZONES)
            rec = {"feed": "incident", "source": "gen"}
            if rng.random() < 0.4:
                rid, old = new_or_old("incident", "inc", 0.4)
                t = upsert_ts("incident", rid, t0, t_inc_end)
                rec["id"] = rid
                if old and rng.random() < 0.25:
                    cancel_line("incident", t, rid)
                    continue
            else:
                t = rand_t(t0, t_inc_end)
            rec.update({"ts": fmt(t), "zone": zone, "severity": rng.randint(1, 5)})
            if rng.random() < 0.5:
                rec["category"] = rng.choice(["theft", "assault", "fire", "traffic"])
            if rng.random() < 0.1:
                rec["status"] = "open"
        elif feed == "call":
            zone = rng.choice(CALL_ZONES)
            rec = {"feed": "call"}
            if rng.random() < 0.4:
                rid, old = new_or_old("call", "call", 0.4)
                t = upsert_ts("call", rid, t0, t_end)
                rec["id"] = id_form(rid)
                if old and rng.random() < 0.25:
                    cancel_line("call", t, rid)
                    continue
            else:
                t = rand_t(t0, t_end)
                if rng.random() < 0.03:
                    rec["status"] = "cancelled"  # no id: status has no effect
            rec.update({"ts": fmt(t), "zone": zone})
            if rng.random() < 0.6:
                rec["category"] = rng.choice(["noise", "lighting", "waste", "crowd", "parking"])
            if rng.random() < 0.3:
                rec["source"] = "311"
        elif feed == "density":
            zone = rng.choice(DENS_ZONES)
            hi = t_dens_end if zone in SILENT_DENS_ZONES else t_end
            cap = ZONE2[zone][1]
            people = rng.uniform(0.1, 1.3) * cap
            if rng.random() < 0.08:
                people *= rng.uniform(2, 6)  # surges well above the typical crowd
            people = rng.choice([int(people), round(people, 2)])
            rec = {"feed": "density"}
            if rng.random() < 0.05:
                rid, old = new_or_old("density", "dens", 0.5)
                t = upsert_ts("density", rid, t0, hi)
                rec["id"] = rid
            else:
                t = rand_t(t0, hi)
            rec.update({"ts": fmt(t), "zone": zone, "people": people})
            sensor_field(rec, ["s1", "s2", "s3"])
        elif feed == "traffic":
            zone = rng.choice(TRAFFIC_ZONES)
            rc = ZONE2[zone][6] or 2000
            vol = rng.uniform(0.1, 1.5) * rc
            vol = rng.choice([int(vol), round(vol, 1), float(int(vol))])
            rec = {"feed": "traffic"}
            if rng.random() < 0.15:
                rid, old = new_or_old("traffic", "tr", 0.4)
                t = upsert_ts("traffic", rid, t0, t_end)
                rec["id"] = id_form(rid)
                if old and rng.random() < 0.2:
                    cancel_line("traffic", t, rid)
                    continue
            else:
                t = rand_t(t0, t_end)
            rec.update({"ts": fmt(t), "zone": zone, "volume": vol})
            sensor_field(rec, ["c1", "c2"])
        elif feed == "event":
            zone = rng.choice(ZONE2_IDS + ["stade"] * 3)
            rid, old = new_or_old("event", "ev", 0.35)
            start = rng.randrange(t0 - 2 * 86400, t_fut) // 900 * 900
            end = start + rng.choice([1800, 3600, 5400, 7200, 3 * 3600, 6 * 3600, 86400,
                                      3 * 86400])
            pub = upsert_ts("event", rid, t0 - 3 * 86400, t_end)
            if old and rng.random() < 0.2:
                cancel_line("event", pub, rid)
                continue
            kind = rng.choice(KINDS)
            if zone == "stade" and rng.random() < 0.6:
                kind = rng.choice(["sport", "concert"])
            rec = {"feed": "event", "ts": fmt(pub), "id": rid, "zone": zone,
                   "start": fmt(start), "end": fmt(end),
                   "attendance": event_size(zone, kind), "kind": kind}
        elif feed == "weather":
            while True:
                hour = rng.randrange(t0, t_fut) // 3600 * 3600
                if not wx_gap[0] <= hour < wx_gap[1]:
                    break
            t = hour + rng.choice([0, 0, 0, 600, 1800])
            rec = {"feed": "weather", "ts": fmt(t)}
            if rng.random() < 0.08:
                rid, old = new_or_old("weather", "wx", 0.3)
                rec["id"] = rid
                if old and rng.random() < 0.2:
                    cancel_line("weather", t, rid)
                    continue
            if t <= t_end and rng.random() < 0.5:
                rec["kind"] = "observed"
            else:
                rec["kind"] = "forecast"
                if rng.random() < 0.8:
                    rec["issued_at"] = fmt(hour - rng.choice([1, 2, 3, 6, 12, 24]) * 3600)
            for k, lo, hi in (("temperature_c", -5, 40), ("precip_mm", 0, 6), ("wind_kmh", 0, 90)):
                c = rng.random()
                if c < 0.7:
                    rec[k] = round(rng.uniform(lo, hi), 1)
                elif c < 0.8:
                    rec[k] = None
        else:
            zone = rng.choice(ZONE2_IDS)
            rid, old = new_or_old("deployment", "dep", 0.35)
            start = rng.randrange(t0 - 86400, t_fut) // 1800 * 1800
            end = start + rng.choice([3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400])
            pub = upsert_ts("deployment", rid, t0 - 2 * 86400, t_end)
            if old and rng.random() < 0.2:
                cancel_line("deployment", pub, rid)
                continue
            rec = {"feed": "deployment", "ts": fmt(pub), "id": rid, "zone": zone,
                   "start": fmt(start), "end": fmt(end),
                   "agents": rng.randint(0, 12 if zone != "stade" else 40)}
        lines.append(json.dumps(rec))

    with open(args.out, "w") as f:
        for line in lines:
            f.write(line + "\n")
    if args.zones_out:
        with open(args.zones_out, "w") as f:
            json.dump(zones_geojson2(), f, indent=1)
            f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=int, choices=(1, 2), default=2)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--start", default="2026-10-01T00:00:00Z")
    ap.add_argument("--days", type=float, default=42)
    ap.add_argument("--future-days", type=float, default=10)
    ap.add_argument("--invalid", type=float, default=0.01)
    ap.add_argument("--zones-out")
    ap.add_argument("--incident-gap-hours", type=float, default=30,
                    help="v2: no incident in the last hours of the span")
    ap.add_argument("--silent-density-days", type=float, default=4,
                    help="v2: densities of %s stop this many days before the end"
                    % ", ".join(SILENT_DENS_ZONES))
    args = ap.parse_args()
    if args.model == 1:
        gen_v1(args)
    else:
        gen_v2(args)


if __name__ == "__main__":
    main()
