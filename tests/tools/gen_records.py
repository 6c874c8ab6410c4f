#!/usr/bin/env python3
"""Random NDJSON records for cross-checking the engine against indicators_reference.py.

Usage: python3 gen_records.py --seed N --n COUNT --out FILE
           [--start 2026-10-01T00:00:00Z --days 42 --future-days 10 --invalid 0.01
            --zones-out ZONES.geojson]

Zones z0, z1, z2. All five feeds; upserts (repeated ids, some with equal ts written in different
forms), cancellations, events of every kind, weather observed and forecast (with and without
issued_at), deployments, densities with and without `sensor`; timestamps as RFC 3339 (Z,
offsets, fractions) or unix seconds (integer or fractional). The default span (October-November
2026) contains the end of summer time in Europe/Paris. With --invalid > 0 a fraction of lines is
unambiguously invalid (unknown feed, no ts, severity 9, negative people, unknown kind, non-JSON).
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--start", default="2026-10-01T00:00:00Z")
    ap.add_argument("--days", type=float, default=42)
    ap.add_argument("--future-days", type=float, default=10)
    ap.add_argument("--invalid", type=float, default=0.01)
    ap.add_argument("--zones-out")
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
