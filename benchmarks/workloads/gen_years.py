#!/usr/bin/env python3
"""Incidents over many years for the state-memory benchmark (issue 15: state per zone-hour
on a ten-year replay). Writes `ts,zone,category,severity` (the peers' columns, so
benchmarks/workloads/peers.toml maps it) with unix-second times, in time order, one row
every `gap` seconds on average over `years` years ending at 2024-01-01, zones z000..z099
drawn with the same skewed weights for every year. Seeded: same arguments, same file.

usage: gen_years.py OUT.csv [--years 10] [--per-hour 20] [--seed 42]
"""
import argparse
import random

CATEGORIES = ["fire", "medical", "crowd", "security", "traffic", "weather", "lost_person", "other"]
END = 1_704_067_200  # 2024-01-01T00:00:00Z


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--per-hour", type=float, default=20.0, help="incidents per hour, city-wide")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    weights = [1.0 / (1 + i) ** 0.7 for i in range(100)]
    zones = [f"z{i:03d}" for i in range(100)]
    t = END - a.years * 365 * 86_400
    gap = 3600.0 / a.per_hour
    n = 0
    with open(a.out, "w") as f:
        f.write("ts,zone,category,severity\n")
        while True:
            t += rng.expovariate(1.0 / gap)
            if t >= END:
                break
            z = rng.choices(zones, weights)[0]
            f.write(f"{int(t)},{z},{rng.choice(CATEGORIES)},{rng.randint(1, 5)}\n")
            n += 1
    print(f"{n} incidents over {a.years} years in {a.out}")


if __name__ == "__main__":
    main()
