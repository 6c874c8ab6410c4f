#!/usr/bin/env python3
"""Adds to a record file big events announced days ahead, and incidents during them.

Usage: python3 plant_event_incidents.py --seed N --zones ZONES.geojson --events COUNT
           [--exclude stade,far] < IN.ndjson > OUT.ndjson

The records of IN are copied unchanged; then COUNT events (ids `planted-<i>`, kind sport,
concert or festival, 5,000 to 60,000 attendees, two to five hours long, starting at a whole
hour in the span of IN's incidents, published 2 to 10 days before they start) in zones drawn
from ZONES less --exclude, and during each event's hours Poisson(attendance / 4000) incidents of
severity 2 to 4 in its zone. It makes a history in which incidents do follow announced crowds,
to check that `vigie backtest` tells apart a forecast that sees them (model v2's exposure) from
one that does not: a check of the instrument, not evidence about any real city.
"""

import argparse
import datetime as dt
import json
import math
import random
import sys


def ts_of(v):
    if isinstance(v, (int, float)):
        return float(v)
    return dt.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


def poisson(rng, lam):
    # Knuth's method; lam stays below 20 here.
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--zones", required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--exclude", default="stade,far")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    excluded = set(args.exclude.split(","))
    with open(args.zones) as f:
        zones = [z["properties"]["id"] for z in json.load(f)["features"]]
    zones = [z for z in zones if z not in excluded]

    first = last = None
    for line in sys.stdin:
        sys.stdout.write(line)
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("feed") == "incident" and "ts" in rec:
            try:
                t = ts_of(rec["ts"])
            except (TypeError, ValueError):
                continue
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
    if first is None:
        sys.exit("no incident in the input")

    out = []
    for i in range(args.events):
        zone = rng.choice(zones)
        start = int(rng.uniform(first, last - 6 * 3600)) // 3600 * 3600
        hours = rng.randint(2, 5)
        attendance = rng.randint(5000, 60000)
        published = start - rng.randint(2 * 86400, 10 * 86400)
        out.append({"feed": "event", "ts": published, "id": "planted-%d" % i, "zone": zone,
                    "start": start, "end": start + hours * 3600, "attendance": attendance,
                    "kind": rng.choice(["sport", "concert", "festival"])})
        for _ in range(poisson(rng, attendance / 4000)):
            t = start + rng.randrange(hours * 3600)
            out.append({"feed": "incident", "ts": t, "zone": zone,
                         "severity": rng.randint(2, 4), "category": "planted"})
    for rec in out:
        sys.stdout.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
