#!/usr/bin/env python3
"""vigie's indicator model (indicators.md: v2, or v1 with PEER_MODEL=1) as a Bytewax
dataflow, written from the model's text: the peer of `vigie replay` on the same work.

The records (CSV through a mapping of the configuration, or NDJSON) are read in arrival order
by one source partition, validated (`parse`), and flow through keyed steps:

  upserts     records with an id, keyed by (feed, id): the greatest ts wins (ties: the last
              arrived), then dropped if cancelled or in no zone
  zone_state  every counted record of a zone folded into its state: incidents and calls per
              hour, density and traffic per hour and sensor, events, deployments, greatest ts
  weather     city-wide: per hour the record that counts
  clock       the greatest counted incident/density ts over the zones' states; joined with the
              weather, broadcast to every zone of the zone file
  spill       each zone's events sent to the zones that list it as a neighbour
  zone_rows   per zone, its state, the globals and its neighbours' events joined at the end of
              the input: the zone's horizon computed (baseline and typical values over the 52
              weeks before the clock's week, recent, exposure, risk, trends, confidence) and
              written as vigie's NDJSON lines, with its clashes

Every feed of indicators.md is read: incident, call, density, traffic, event, weather,
deployment, by zone or lat/lon.

usage: PEER_CONFIG=peers.toml PEER_INPUT='peer_events=events.csv' PEER_OUTPUT=out.ndjson \
       [PEER_MODEL=1] python -m bytewax.run bytewax_model_peer:flow -w WORKERS
       (from this folder, or with it on PYTHONPATH; several inputs separated by ';')
"""
import json
import os
import sys
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import FileSink
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import same_model as sm  # noqa: E402
from same_model import FEED, ID, CANCELLED, ZONE, TS, PAYLOAD  # noqa: E402

CONFIG = sm.Config(os.environ["PEER_CONFIG"], os.environ.get("PEER_MODEL") or None)
M = CONFIG.model
ZONES = CONFIG.zones
CAL = CONFIG.calendar
INPUTS = sm.parse_inputs(CONFIG, [s for s in os.environ["PEER_INPUT"].split(";") if s])
# zone -> the zones that list it as a neighbour (they receive its spill)
SPILL_TO = {z: [o.id for o in ZONES.values() if z in o.neighbours] for z in ZONES}
END = ("end", -1, None, False, "", 0, ())


# ---- source: the inputs in arrival order, one partition ------------------------------------

class _InputsPartition(StatefulSourcePartition):
    def __init__(self, batch_size):
        self.batch_size = batch_size
        self.lines = self._lines()

    def _lines(self):
        for i, (path, mapping) in enumerate(INPUTS):
            with open(path, newline="") as f:
                if mapping is not None:
                    f.readline()  # the header, read when the flow is built
                for n, text in enumerate(f, 1):
                    text = text.rstrip("\r\n")
                    if text:
                        yield (i, i * sm.SEQ_SHIFT + n, text)
        yield (-1, -1, None)

    def next_batch(self):
        out = []
        for item in self.lines:
            out.append(item)
            if len(out) >= self.batch_size:
                return out
        if not out:
            raise StopIteration
        return out

    def snapshot(self):
        return None


class InputsSource(FixedPartitionedSource):
    def list_parts(self):
        return ["inputs"]

    def build_part(self, step_id, for_part, resume_state):
        return _InputsPartition(1000)


def _reader(path, mapping):
    if mapping is None:
        return None
    with open(path, newline="") as f:
        header = sm.split_csv(f.readline().rstrip("\r\n"))
    return mapping.reader(header), mapping.incident_reader(header, ZONES)


READERS = [_reader(p, m) for p, m in INPUTS]
RECORDS = sm.Records(ZONES)


def parse(item):
    """A line as a record tuple; None when refused, or in no zone without an id."""
    i, seq, text = item
    if i < 0:
        return END
    reader = READERS[i]
    if reader is None:
        try:
            rec = json.loads(text)
        except ValueError:
            return None
    else:
        cells = sm.split_csv(text)
        if reader[1] is not None:  # incidents of a plain mapping, straight to a tuple
            r = reader[1](cells, seq)
            if r is not False:
                return r
        try:
            rec = reader[0](cells)
        except IndexError:
            return None
    r = RECORDS.record(rec, seq)
    if r is None or (r[ZONE] is None and r[ID] is None):
        return None
    return r


# ---- the zone's state ----------------------------------------------------------------------

class ZoneState:
    __slots__ = ("hourly", "inc_ts", "dens", "dens_ts", "traffic", "events", "deployments")

    def __init__(self):
        self.hourly = {}  # hour -> [incidents, severity sum, calls]
        self.inc_ts = None
        self.dens = {}  # (hour, sensor) -> [sum, n]
        self.dens_ts = None
        self.traffic = {}
        self.events = []  # (id, start, end, attendance, kind)
        self.deployments = []  # (start, end, agents)


def fold_zone(st, r):
    feed, ts = r[FEED], r[TS]
    if feed == "incident" or feed == "call":
        h = int(ts // 3600)
        a = st.hourly.get(h)
        if a is None:
            a = st.hourly[h] = [0, 0, 0]
        if feed == "incident":
            a[0] += 1
            a[1] += r[PAYLOAD][0]
            if st.inc_ts is None or ts > st.inc_ts:
                st.inc_ts = ts
        else:
            a[2] += 1
    elif feed == "density" or feed == "traffic":
        d = st.dens if feed == "density" else st.traffic
        key = (int(ts // 3600), r[PAYLOAD][1])
        a = d.get(key)
        if a is None:
            d[key] = [r[PAYLOAD][0], 1]
        else:
            a[0] += r[PAYLOAD][0]
            a[1] += 1
        if feed == "density" and (st.dens_ts is None or ts > st.dens_ts):
            st.dens_ts = ts
    elif feed == "event":
        st.events.append((r[ID],) + r[PAYLOAD])
    elif feed == "deployment":
        st.deployments.append(r[PAYLOAD])
    return st


def fold_weather(best, r):
    if r[FEED] == "weather":
        h = int(r[TS] // 3600)
        old = best.get(h)
        best[h] = r if old is None else sm.better_weather(old, r)
    return best


def _max(a, b):
    return b if a is None or (b is not None and b > a) else a


def clock_of(a, b):
    return (_max(a[0], b[0]), _max(a[1], b[1]))


def broadcast(kv):
    """The globals, computed once and sent to every zone of the zone file."""
    _, (weather, clock) = kv
    if clock is None or (clock[0] is None and clock[1] is None):
        raise RuntimeError("no counted incident or density record: a replay without a clock")
    inc_ts, dens_ts = clock
    clock_h = sm.hour_of(_max(inc_ts, dens_ts))
    last_inc_h = None if inc_ts is None else sm.hour_of(inc_ts)
    w = {h: sm.weather_factor(M, r[PAYLOAD]) for h, r in (weather or {}).items()}
    g = (clock_h, last_inc_h, CAL.how_week(clock_h)[1], w)
    return [(z, g) for z in ZONES]


def to_neighbours(kv):
    zone, st = kv
    if not st.events:
        return []
    evs = [e[1:] for e in st.events]
    return [(z, evs) for z in SPILL_TO[zone]]


def _window_sums(values, K):
    """{how: [sum, n]} of per-hour values over the hours whose week is in K−W..K−1."""
    out = {}
    for g, v in values.items():
        how, week = CAL.how_week(g)
        if K - M.weeks <= week <= K - 1:
            a = out.get(how)
            if a is None:
                out[how] = [v, 1]
            else:
                a[0] += v
                a[1] += 1
    return out


def _observed(per_sensor):
    obs = {}
    for (h, _sensor), (s, n) in per_sensor.items():
        obs[h] = obs.get(h, 0.0) + s / n
    return obs


def zone_rows(kv):
    zone, (glob, st, neighbour_events) = kv
    clock_h, last_inc_h, K, weather = glob
    zp = ZONES[zone]
    st = st or ZoneState()
    v2 = M.version == 2
    lo, hi = clock_h - M.past_hours - 3, clock_h + M.future_hours
    cw = M.call_weight if v2 else 0
    I = {g: a[1] + cw * a[2] for g, a in st.hourly.items()}
    base = _window_sums(I, K)
    obs = _observed(st.dens)
    typ = _window_sums(obs, K)
    tobs = _observed(st.traffic) if v2 else {}
    ttyp = _window_sums(tobs, K)
    E, X, demo, deployed, spill = {}, {}, {}, {}, {}
    for _id, start, end, att, kind in st.events:
        a, b = sm.overlap_hours(start, end)
        x = att / 1000 * M.exposure_rates[kind]
        for h in range(max(a, lo), min(b, hi) + 1):
            E[h] = E.get(h, 0) + att
            X[h] = X.get(h, 0) + x
            if kind == "demonstration":
                demo[h] = 1
    for start, end, agents in st.deployments:
        a, b = sm.overlap_hours(start, end)
        for h in range(max(a, lo), min(b, hi) + 1):
            deployed[h] = deployed.get(h, 0) + agents
    for evs in neighbour_events or ():
        xn = {}
        for start, end, att, kind in evs:
            a, b = sm.overlap_hours(start, end)
            x = att / 1000 * M.exposure_rates[kind]
            for h in range(max(a, lo), min(b, hi) + 1):
                xn[h] = xn.get(h, 0) + x
        for h, x in xn.items():
            spill[h] = spill.get(h, 0) + x
    out = []
    series = []
    zero = (0, 0, 0)
    for h in range(lo, hi + 1):
        how = CAL.how_week(h)[0]
        b = base.get(how)
        t = typ.get(how)
        tt = ttyp.get(how)
        f_w = weather.get(h)
        values, s = sm.indicator(
            M, zp, h, clock_h, last_inc_h, I.get(h, 0), I.get(h - 1, 0), I.get(h - 2, 0),
            b[0] if b else 0, obs.get(h), t[0] if t else 0, t[1] if t else 0, E.get(h, 0),
            X.get(h, 0), spill.get(h, 0), demo.get(h, 0), deployed.get(h, 0),
            1.0 if f_w is None else f_w, f_w is not None, tobs.get(h),
            tt[0] if tt else 0, tt[1] if tt else 0)
        series.append(s)
        if h >= clock_h - M.past_hours:
            a = st.hourly.get(h, zero)
            trend_values = sm.trends(M, s, series[-2:-5:-1])
            out.append(("all", sm.line(zone, h, values, trend_values, a[0], a[2], M.version)))
    out.extend(("all", c) for c in sm.clashes(zp, st.events))
    return out


# ---- the dataflow --------------------------------------------------------------------------

flow = Dataflow("vigie_model")
records = op.filter_map("parse", op.input("inputs", flow, InputsSource()), parse)
with_id = op.branch("with_id", records, lambda r: r[ID] is not None)
winners = op.reduce_final(
    "upserts", op.key_on("feed_id", with_id.trues, lambda r: r[FEED] + "\x1f" + r[ID]),
    sm.upsert_winner)
winners = op.filter_map(
    "counted", winners, lambda kv: None if kv[1][CANCELLED] or kv[1][ZONE] is None else kv[1])
counted = op.merge("all_counted", with_id.falses, winners)
city_wide = op.branch("city_wide", counted, lambda r: r[FEED] == "weather" or r[FEED] == "end")
zone_state = op.fold_final(
    "zone_state", op.key_on("zone", city_wide.falses, lambda r: r[ZONE]), ZoneState, fold_zone)
weather = op.fold_final(
    "weather", op.key_on("city", city_wide.trues, lambda r: "city"), dict, fold_weather)
clock = op.reduce_final(
    "clock", op.map("zone_clock", zone_state, lambda kv: ("city", (kv[1].inc_ts, kv[1].dens_ts))),
    clock_of)
globals_ = op.flat_map(
    "broadcast", op.join("globals", weather, clock, emit_mode="final"), broadcast)
spill = op.fold_final(
    "spill", op.flat_map("to_neighbours", zone_state, to_neighbours), list,
    lambda acc, evs: acc + [evs])
rows = op.flat_map(
    "zone_rows", op.join("zone_inputs", globals_, zone_state, spill, emit_mode="final"),
    zone_rows)
op.output("out", rows, FileSink(Path(os.environ["PEER_OUTPUT"])))
