#!/usr/bin/env python3
"""Checks the same-model peers against vigie on a mixed workload of every feed.

Writes, from a seed, a workload on Marseille's 16 polygons (config/zones/marseille.geojson,
some zones given a road capacity and listed neighbours, the others neighbours by adjacency;
Europe/Paris, so a DST change falls in it): incidents, calls, densities, traffic counts, events,
weather (observed and forecast, with and without issued_at, null fields) and deployments, with
upserts and cancellations (some bare: feed, ts, id, status), ids as numbers and text, lat/lon and unknown zones, RFC 3339 times with
offsets and fractional unix seconds, and invalid records. Runs `vigie replay`, the Pathway peer
and the Bytewax peer (2 workers) on it under model v2 and v1, and compares each peer's output
with vigie's through tests/tools/compare_outputs.py.

usage: check_model_peers.py [--records 40000] [--seed 7] [--vigie target/release/vigie]
       (with the peers' virtual environment's python: target/peers-venv/bin/python)
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KINDS = ["market", "festival", "sport", "concert", "demonstration", "official_visit", "filming",
         "roadworks", "other"]


def write_workload(d, n, seed):
    rng = random.Random(seed)
    with open(os.path.join(REPO, "config/zones/marseille.geojson")) as f:
        zf = json.load(f)
    ids = [f["properties"]["id"] for f in zf["features"]]
    for i, f in enumerate(zf["features"]):
        p = f["properties"]
        if i % 3 == 0:
            p["road_capacity"] = 800 + 100 * i
        if i % 5 == 0:
            p["neighbours"] = [ids[(i + 3) % len(ids)], ids[(i + 7) % len(ids)], ids[(i + 3) % len(ids)]]
        if i == 4:
            p["neighbours"] = []
    with open(os.path.join(d, "zones.geojson"), "w") as f:
        json.dump(zf, f)
    for v in (1, 2):
        with open(os.path.join(d, f"v{v}.toml"), "w") as f:
            f.write(f'timezone = "Europe/Paris"\nzones = "zones.geojson"\n[model]\nversion = {v}\n')
    pts = [c for f in zf["features"] for poly in f["geometry"]["coordinates"] for c in poly[0]]
    lons, lats = [p[0] for p in pts], [p[1] for p in pts]
    t0, span = 1790812800 - 50 * 86400, 70 * 86400

    def t(x):
        style = rng.choice(["num", "num", "frac", "z", "off"])
        if style == "num":
            return int(x)
        if style == "frac":
            return x + 0.25
        d = datetime.fromtimestamp(int(x), timezone.utc)
        if style == "z":
            return d.strftime("%Y-%m-%dT%H:%M:%SZ")
        return d.astimezone(timezone(timedelta(hours=2))).isoformat()

    def loc(r):
        u = rng.random()
        if u < 0.8:
            r["zone"] = rng.choice(ids)
        elif u < 0.95:
            r["lat"], r["lon"] = rng.uniform(min(lats), max(lats)), rng.uniform(min(lons), max(lons))
        else:
            r["zone"] = "nowhere"
        return r

    with open(os.path.join(d, "records.ndjson"), "w") as out:
        for k in range(n):
            ts = t0 + span * k / n + rng.uniform(-600, 0)
            u = rng.random()
            if u < 0.45:
                r = loc({"feed": "incident", "ts": t(ts), "severity": rng.randint(1, 5), "category": "x"})
                if rng.random() < 0.1:
                    r["id"] = rng.choice([rng.randint(1, 300), str(rng.randint(1, 300))])
                if rng.random() < 0.05:
                    r["status"] = "cancelled"
                if rng.random() < 0.01:
                    r["severity"] = 7
            elif u < 0.6:
                r = loc({"feed": "call", "ts": t(ts)})
                if rng.random() < 0.2:
                    r["id"] = "c%d" % rng.randint(1, 200)
                if rng.random() < 0.1:
                    r["status"] = "cancelled"
            elif u < 0.75:
                r = loc({"feed": "density", "ts": t(ts),
                         "people": rng.choice([rng.uniform(0, 20000), rng.randint(0, 9000)])})
                s = rng.random()
                if s < 0.6:
                    r["sensor"] = "s%d" % rng.randint(0, 2)
                elif s < 0.7:
                    r["sensor"] = None
                elif s < 0.8:
                    r["sensor"] = ""
                if rng.random() < 0.01:
                    r["people"] = -1
            elif u < 0.87:
                r = loc({"feed": "traffic", "ts": t(ts), "volume": rng.uniform(0, 3000)})
                if rng.random() < 0.5:
                    r["sensor"] = "c%d" % rng.randint(0, 1)
                if rng.random() < 0.05:
                    r["id"] = "t%d" % rng.randint(0, 50)
            elif u < 0.93:
                st = ts + rng.uniform(-2 * 86400, 20 * 86400)
                r = loc({"feed": "event", "ts": t(ts), "id": "ev%d" % rng.randint(1, 400),
                         "start": t(st), "end": t(st + rng.uniform(1800, 3 * 86400)),
                         "attendance": rng.choice([rng.randint(0, 60000), rng.uniform(0, 5000)]),
                         "kind": rng.choice(KINDS)})
                if rng.random() < 0.1:
                    r["status"] = "cancelled"
                if rng.random() < 0.01:
                    r["kind"] = "rave"
            elif u < 0.97:
                h = int(ts // 3600) + rng.randint(-48, 240)
                r = {"feed": "weather", "ts": t(h * 3600 + rng.randint(0, 3599)),
                     "kind": rng.choice(["observed", "forecast", "forecast"])}
                for kk, lo, hi in (("temperature_c", 10, 40), ("precip_mm", 0, 5), ("wind_kmh", 0, 90)):
                    x = rng.random()
                    if x < 0.7:
                        r[kk] = rng.uniform(lo, hi)
                    elif x < 0.8:
                        r[kk] = None
                if r["kind"] == "forecast" and rng.random() < 0.7:
                    r["issued_at"] = t(h * 3600 - rng.choice([3600, 7200, 86400]))
                if rng.random() < 0.02:
                    r["id"] = "w%d" % rng.randint(0, 20)
            else:
                st = ts + rng.uniform(-86400, 10 * 86400)
                r = {"feed": "deployment", "ts": t(ts), "id": "d%d" % rng.randint(1, 300),
                     "zone": rng.choice(ids), "start": t(st), "end": t(st + rng.uniform(3600, 86400)),
                     "agents": rng.randint(0, 12)}
                if rng.random() < 0.1:
                    r["status"] = "cancelled"
            if r.get("status") == "cancelled" and "id" in r and rng.random() < 0.3:
                r = {k: r[k] for k in ("feed", "ts", "id", "status")}  # a bare cancellation
            out.write(json.dumps(r) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=40000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--vigie", default=os.path.join(REPO, "target/release/vigie"))
    a = ap.parse_args()
    compare = os.path.join(REPO, "tests/tools/compare_outputs.py")
    failed = False
    with tempfile.TemporaryDirectory() as d:
        write_workload(d, a.records, a.seed)
        rec = os.path.join(d, "records.ndjson")
        for v in (2, 1):
            cfg = os.path.join(d, f"v{v}.toml")
            ref = os.path.join(d, f"vigie-v{v}.ndjson")
            subprocess.run([a.vigie, "replay", "--config", cfg, "--input", rec, "--output", ref],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            runs = {
                "Pathway": ([sys.executable, os.path.join(HERE, "pathway_model_peer.py"),
                             "--config", cfg, "--input", rec, "--output", os.path.join(d, "pw.ndjson")],
                            {}, os.path.join(d, "pw.ndjson")),
                "Bytewax": ([sys.executable, "-m", "bytewax.run", "bytewax_model_peer:flow", "-w", "2"],
                            {"PEER_CONFIG": cfg, "PEER_INPUT": rec, "PEER_OUTPUT": os.path.join(d, "bw.ndjson")},
                            os.path.join(d, "bw.ndjson")),
            }
            for name, (cmd, env, out) in runs.items():
                subprocess.run(cmd, check=True, cwd=HERE,
                               env={**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                r = subprocess.run([sys.executable, compare, ref, out], capture_output=True, text=True)
                print(f"model v{v}, {name}: {r.stdout.strip().splitlines()[-1]}")
                if r.returncode != 0:
                    print(r.stdout)
                    failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
