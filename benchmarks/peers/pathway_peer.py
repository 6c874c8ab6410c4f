#!/usr/bin/env python3
"""The peers' query in Pathway (a differential-dataflow engine in Rust, driven from Python).

Per zone and hour (hour = ts - ts % 3600): the number of incidents and the sum of their
severities, inner-joined with the zone table (risk = weight * sum). The events file is read
by Pathway's CSV connector in static mode (the whole file, then the run ends). Pathway writes
its output as an update stream (columns time and diff); `bench-all` collapses it.

usage: pathway_peer.py EVENTS_CSV ZONES_CSV OUT_CSV     (threads: PATHWAY_THREADS=N)
"""
import sys

import pathway as pw


class Incident(pw.Schema):
    ts: int
    zone: str
    category: str
    severity: int


class ZoneRow(pw.Schema):
    zone: str
    weight: float


def main():
    events, zones, out = sys.argv[1:4]
    incidents = pw.io.csv.read(events, schema=Incident, mode="static")
    table = pw.io.csv.read(zones, schema=ZoneRow, mode="static")
    hourly = (
        incidents.with_columns(hour=pw.this.ts - pw.this.ts % 3600)
        .groupby(pw.this.zone, pw.this.hour)
        .reduce(
            pw.this.zone,
            pw.this.hour,
            count=pw.reducers.count(),
            sum_severity=pw.reducers.sum(pw.this.severity),
        )
    )
    joined = hourly.join(table, pw.left.zone == pw.right.zone).select(
        pw.left.zone,
        pw.left.hour,
        pw.left.count,
        pw.left.sum_severity,
        weight=pw.right.weight,
        risk=pw.right.weight * pw.left.sum_severity,
    )
    pw.io.csv.write(joined, out)
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)


if __name__ == "__main__":
    main()
