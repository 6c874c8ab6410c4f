#!/usr/bin/env python3
"""The peers' query in Bytewax (a Python dataflow on timely, in Rust).

Per zone and hour (hour = ts - ts % 3600): the number of incidents and the sum of their
severities, joined with the zone table (a dict loaded at start: Bytewax's join keeps one value
per key and side, so enrichment by lookup is its idiom); risk = weight * sum.

PEER_MODE=final   one state per "zone|hour" key, emitted at the end of the input;
PEER_MODE=window  keyed by zone, event-time tumbling windows of one hour aligned on the hour,
                  10 minutes of allowed lateness (the file's disorder is at most 5 minutes).

usage: PEER_EVENTS=… PEER_ZONES=… PEER_OUT=… PEER_MODE=final|window \
       python -m bytewax.run bytewax_peer:flow -w WORKERS      (from this folder, or PYTHONPATH)
"""
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import FileSink, FileSource
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window

MODE = os.environ.get("PEER_MODE", "final")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

with open(os.environ["PEER_ZONES"]) as f:
    WEIGHTS = {z: float(w) for z, w in (line.strip().split(",") for line in list(f)[1:])}


def parse(line):
    ts, zone, _category, severity = line.split(",")
    if ts == "ts":
        return None  # the header
    return int(ts), zone, int(severity)


def add(acc, incident):
    return (acc[0] + 1, acc[1] + incident[2])


def row(zone, hour, count, total):
    weight = WEIGHTS.get(zone)
    if weight is None:
        return None  # inner join: zones without a weight are left out
    return ("all", f"{zone},{hour},{count},{total},{weight},{weight * total}")


flow = Dataflow("peer_zone_hour")
incidents = op.filter_map(
    "parse", op.input("events", flow, FileSource(Path(os.environ["PEER_EVENTS"]))), parse
)
if MODE == "final":
    keyed = op.key_on("zone_hour", incidents, lambda e: f"{e[1]}|{e[0] - e[0] % 3600}")
    totals = op.fold_final("totals", keyed, lambda: (0, 0), add)

    def final_row(kv):
        key, (count, total) = kv
        zone, hour = key.split("|")
        return row(zone, hour, count, total)

    rows = op.filter_map("join", totals, final_row)
else:
    keyed = op.key_on("zone", incidents, lambda e: e[1])
    clock = EventClock(
        ts_getter=lambda e: datetime.fromtimestamp(e[0], tz=timezone.utc),
        wait_for_system_duration=timedelta(minutes=10),
    )
    windower = TumblingWindower(length=timedelta(hours=1), align_to=EPOCH)
    windows = fold_window(
        "totals", keyed, clock, windower, lambda: (0, 0), add, lambda a, b: (a[0] + b[0], a[1] + b[1])
    )

    def window_row(kv):
        zone, (window_id, (count, total)) = kv
        return row(zone, window_id * 3600, count, total)

    rows = op.filter_map("join", windows.down, window_row)
op.output("out", rows, FileSink(Path(os.environ["PEER_OUT"])))
