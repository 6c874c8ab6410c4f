#!/usr/bin/env python3
"""vigie's indicator model (indicators.md: v2, or v1 with --model 1) as a Pathway dataflow,
written from the model's text: the peer of `vigie replay` on the same work.

Tables all the way, in Pathway's own operators:

  records     a CSV input whose mapping needs no arrival order (no ids, no weather) is read by
              Pathway's CSV reader (static mode); NDJSON and other CSV inputs by a Python
              connector that numbers the records in arrival order and validates them
  upserts     records with an id grouped by (feed, id): the greatest (ts, arrival) wins, joined
              back, dropped if cancelled or in no zone
  hourly      groupby (zone, hour): incidents, severity sums, greatest ts, calls; density and
              traffic means per sensor, summed over sensors; located by a join with the zones
              once grouped (fewer rows than records)
  clock       a reduce over the hourly tables: the greatest counted incident/density ts, and
              that of incidents alone; a singleton table, cross-joined where it is needed
  windows     the hours of the 52 weeks before the clock's week, grouped by (zone, hour of week):
              baseline sums, typical crowd and traffic
  events      flattened over the hours of the grid they overlap: E, exposure, demo; joined with
              the neighbour relation for the spill; deployments likewise
  grid        zones × the horizon's hours (and the three before, for the trends), left-joined
              with all of the above (I at h−1 and h−2 as the hourly table shifted); the
              formula of one zone and hour is a UDF
  trends      the rows' risk, load and fluidity shifted by one, two and three hours, joined
  clashes     events self-joined on the zone
  output      pw.io.subscribe, written as vigie's NDJSON lines when the run ends

The input is taken in one commit (as the static CSV reader does): fed in many commits,
Pathway 0.33 emitted inconsistent retractions for `sum` over floats (negative multiplicities),
which left stale rows in the result.

Every feed of indicators.md is read: incident, call, density, traffic, event, weather,
deployment, by zone or lat/lon.

usage: pathway_model_peer.py --config peers.toml --input peer_events=events.csv \
       --output out.ndjson [--model 1]           (threads: PATHWAY_THREADS=N)
"""
import argparse
import json
import os
import sys

import pathway as pw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import same_model as sm  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--input", action="append", required=True)
ap.add_argument("--output", required=True)
ap.add_argument("--model", type=int)
ARGS = ap.parse_args()
CONFIG = sm.Config(ARGS.config, ARGS.model)
M = CONFIG.model
ZONES = CONFIG.zones
CAL = CONFIG.calendar
V2 = M.version == 2
CW = M.call_weight if V2 else 0.0


class Rec(pw.Schema):
    seq: int
    feed: str
    rid: str | None
    cancelled: bool
    zone: str | None
    ts: float
    value: float  # severity, people, volume, attendance or agents
    sensor: str
    start: float
    end: float
    kind: str
    temp: float | None
    precip: float | None
    wind: float | None
    issued: float | None


class RecordsSubject(pw.io.python.ConnectorSubject):
    """The inputs Pathway's CSV reader does not take, in arrival order: validated, numbered."""

    def __init__(self, inputs):
        super().__init__()
        self.inputs = inputs

    def run(self):
        records = sm.Records(ZONES)
        for i, (path, mapping) in self.inputs:
            with open(path, newline="") as f:
                read = None
                if mapping is not None:
                    read = mapping.reader(sm.split_csv(f.readline().rstrip("\r\n")))
                for n, text in enumerate(f, 1):
                    text = text.rstrip("\r\n")
                    if not text:
                        continue
                    try:
                        rec = json.loads(text) if read is None else read(sm.split_csv(text))
                    except (ValueError, IndexError):
                        continue
                    r = records.record(rec, i * sm.SEQ_SHIFT + n)
                    if r is None or (r[sm.ZONE] is None and r[sm.ID] is None):
                        continue
                    feed, p = r[sm.FEED], r[sm.PAYLOAD]
                    row = dict(seq=r[sm.SEQ], feed=feed, rid=r[sm.ID], cancelled=r[sm.CANCELLED],
                               zone=r[sm.ZONE], ts=float(r[sm.TS]), value=0.0, sensor="",
                               start=0.0, end=0.0, kind="", temp=None, precip=None, wind=None,
                               issued=None)
                    if p is None:  # a cancellation
                        pass
                    elif feed == "incident":
                        row["value"] = float(p[0])
                    elif feed in ("density", "traffic"):
                        row["value"], row["sensor"] = float(p[0]), p[1]
                    elif feed == "event":
                        row.update(start=float(p[0]), end=float(p[1]), value=float(p[2]), kind=p[3])
                    elif feed == "deployment":
                        row.update(start=float(p[0]), end=float(p[1]), value=float(p[2]))
                    elif feed == "weather":
                        f3 = [None if x is None else float(x) for x in p[1:]]
                        row.update(kind=p[0], temp=f3[0], precip=f3[1], wind=f3[2], issued=f3[3])
                    self.next(**row)
        self.commit()  # the whole input in one commit, as the CSV reader's static mode


def concat(tables):
    tables = [t for t in tables if t is not None]
    if not tables:
        return None
    return tables[0] if len(tables) == 1 else pw.Table.concat_reindex(*tables)


def hour(col):
    return pw.cast(int, col // 3600)


def main():
    inputs = sm.parse_inputs(CONFIG, ARGS.input)
    zones = pw.debug.table_from_rows(pw.schema_from_types(zone=str), [(z,) for z in ZONES])
    # (n, z): n's exposure spills into z
    spill_to = pw.debug.table_from_rows(
        pw.schema_from_types(n=str, z=str),
        [(n, z.id) for z in ZONES.values() for n in z.neighbours] or [("", "")])

    # ---- records: per feed, (zone, ts, …) of the counted ones ----
    feeds = {f: [] for f in sm.FEEDS}
    slow = []
    for i, (path, mapping) in enumerate(inputs):
        if (mapping is None or not mapping.simple() or mapping.zone_column is None
                or mapping.time_format not in ("unix", "unix_ms")
                or mapping.feed not in ("incident", "call", "density", "traffic")):
            slow.append((i, (path, mapping)))
            continue
        value_col = {"incident": "severity", "density": "people", "traffic": "volume"}.get(mapping.feed)
        cols = {mapping.time_column: float, mapping.zone_column: str}
        if value_col:
            cols[mapping.fields[value_col][0]] = float
        sensor_col = mapping.fields.get("sensor", (None,))[0]
        if sensor_col and mapping.feed != "incident":
            cols[sensor_col] = str
        t = pw.io.csv.read(path, schema=pw.schema_from_types(**cols), mode="static")
        ts = pw.this[mapping.time_column]
        if mapping.time_format == "unix_ms":
            ts = ts / 1000
        t = t.select(zone=pw.this[mapping.zone_column], ts=ts,
                     value=pw.this[mapping.fields[value_col][0]] if value_col else 0.0,
                     sensor=pw.this[sensor_col] if sensor_col and mapping.feed != "incident" else "")
        if mapping.feed == "incident":
            t = t.filter((t.value >= 1) & (t.value <= 5) & (t.value == t.value // 1))
        elif value_col:
            t = t.filter(t.value >= 0)
        feeds[mapping.feed].append(t)  # located once grouped by zone and hour
    if slow:
        recs = pw.io.python.read(RecordsSubject(slow), schema=Rec, autocommit_duration_ms=None)
        with_id = recs.filter(recs.rid.is_not_none())
        best = with_id.groupby(with_id.feed, with_id.rid).reduce(
            w=pw.reducers.max(pw.make_tuple(with_id.ts, with_id.seq)))
        best = best.select(seq=pw.this.w[1])
        winners = with_id.join(best, with_id.seq == best.seq).select(*pw.left)
        winners = winners.filter(~winners.cancelled & winners.zone.is_not_none())
        counted = concat([recs.filter(recs.rid.is_none() & recs.zone.is_not_none()), winners])
        for f in sm.FEEDS:
            feeds[f].append(counted.filter(counted.feed == f).select(
                zone=pw.unwrap(pw.this.zone), rid=pw.this.rid, ts=pw.this.ts, value=pw.this.value,
                sensor=pw.this.sensor, start=pw.this.start, end=pw.this.end, kind=pw.this.kind,
                temp=pw.this.temp, precip=pw.this.precip, wind=pw.this.wind,
                issued=pw.this.issued, seq=pw.this.seq))

    def feed(name, *cols):
        return concat([t.select(*[t[c] for c in cols]) for t in feeds[name]])

    def located(t):
        """The rows of t whose zone is a zone of the zone file (the others are unlocated)."""
        return t.join(zones, t.zone == zones.zone).select(*pw.left)

    incidents = feed("incident", "zone", "ts", "value")
    calls = feed("call", "zone", "ts") if V2 else None
    density = feed("density", "zone", "ts", "value", "sensor")
    traffic = feed("traffic", "zone", "ts", "value", "sensor") if V2 else None
    events = feed("event", "zone", "rid", "start", "end", "value", "kind")
    if events is not None:
        events = events.with_columns(rid=pw.unwrap(pw.this.rid))  # an event always has an id
    deployments = feed("deployment", "zone", "start", "end", "value")
    weather = feed("weather", "ts", "kind", "temp", "precip", "wind", "issued", "seq")

    # ---- per zone and hour (located after grouping: fewer rows to join than records) ----
    inc_h = None if incidents is None else located(
        incidents.select(zone=pw.this.zone, h=hour(pw.this.ts), ts=pw.this.ts, sev=pw.this.value)
        .groupby(pw.this.zone, pw.this.h)
        .reduce(pw.this.zone, pw.this.h, n=pw.reducers.count(), sev=pw.reducers.sum(pw.this.sev),
                mx=pw.reducers.max(pw.this.ts)))
    call_h = None if calls is None else located(
        calls.select(zone=pw.this.zone, h=hour(pw.this.ts))
        .groupby(pw.this.zone, pw.this.h).reduce(pw.this.zone, pw.this.h, c=pw.reducers.count()))

    def per_sensor(t):
        """The mean of each sensor's values per zone and hour, and its greatest ts."""
        return None if t is None else located(
            t.select(zone=pw.this.zone, sensor=pw.this.sensor, h=hour(pw.this.ts), ts=pw.this.ts,
                     v=pw.this.value)
            .groupby(pw.this.zone, pw.this.sensor, pw.this.h)
            .reduce(pw.this.zone, pw.this.h, m=pw.reducers.sum(pw.this.v) / pw.reducers.count(),
                    mx=pw.reducers.max(pw.this.ts)))

    dens_s = per_sensor(density)
    traf_s = per_sensor(traffic)

    # ---- the clock and the horizon ----
    clocked = concat([
        None if inc_h is None else inc_h.select(ts=pw.this.mx, inc=pw.this.mx),
        None if dens_s is None else dens_s.select(ts=pw.this.mx, inc=-1e300)])
    if clocked is None:
        sys.exit("no incident or density input: a replay without a clock")
    glob = clocked.reduce(clock=pw.reducers.max(pw.this.ts), inc=pw.reducers.max(pw.this.inc))
    glob = glob.select(
        clock_h=hour(pw.this.clock),
        last_h=pw.if_else(pw.this.inc > -1e299, hour(pw.this.inc), None))

    def how_week(h):
        """The hour of week and the week of hour h: native expressions in UTC, else a UDF."""
        if CAL.utc:
            days = h // 24 + 719162  # days since 0001-01-01, a Monday
            return (days % 7) * 24 + h % 24, days // 7
        return (pw.apply_with_type(lambda x: CAL.how_week(x)[0], int, h),
                pw.apply_with_type(lambda x: CAL.how_week(x)[1], int, h))

    glob = glob.select(*pw.this, K=how_week(pw.this.clock_h)[1],
                       lo=pw.this.clock_h - (M.past_hours + 3), hi=pw.this.clock_h + M.future_hours)

    def with_clock(t):
        """t joined with the clock's singleton row."""
        return t.join(glob).select(*pw.left, *pw.right)

    hours = glob.select(h=pw.apply_with_type(
        lambda lo, hi: list(range(lo, hi + 1)), list[int], pw.this.lo, pw.this.hi))
    hours = hours.flatten(pw.this.h).select(h=pw.this.h, how=how_week(pw.this.h)[0])
    grid = zones.join(hours).select(zone=pw.left.zone, h=pw.right.h, how=pw.right.how)

    def in_window(t):
        """The rows of t of the 52 weeks before the clock's week, with their hour of week."""
        how, week = how_week(t.h)
        t = with_clock(t.select(*pw.this, how=how, week=week))
        return t.filter((t.week >= t.K - M.weeks) & (t.week <= t.K - 1))

    def attach(t, other, on, **cols):
        """t left-joined with other on columns `on`, taking cols {name: (column, default)}."""
        j = t.join_left(other, *[t[c] == other[c] for c in on])
        return j.select(*pw.left, **{k: pw.coalesce(other[c], d) if d is not None else other[c]
                                     for k, (c, d) in cols.items()})

    # ---- incidents and calls: N, C, I; baseline; recent ----
    hourly = None if inc_h is None else inc_h.select(pw.this.zone, pw.this.h, pw.this.n, pw.this.sev)
    if call_h is not None:
        if hourly is None:
            hourly = call_h.select(*pw.this, n=0, sev=0.0)
        else:
            j = hourly.join_outer(call_h, hourly.zone == call_h.zone, hourly.h == call_h.h)
            hourly = j.select(zone=pw.unwrap(pw.coalesce(pw.left.zone, pw.right.zone)),
                              h=pw.unwrap(pw.coalesce(pw.left.h, pw.right.h)),
                              n=pw.coalesce(pw.left.n, 0), sev=pw.coalesce(pw.left.sev, 0.0),
                              c=pw.coalesce(pw.right.c, 0))
    if hourly is not None:
        if "c" not in hourly.column_names():
            hourly = hourly.select(*pw.this, c=0)
        hourly = hourly.select(*pw.this, I=pw.this.sev + CW * pw.this.c)
        base = in_window(hourly).groupby(pw.this.zone, pw.this.how).reduce(
            pw.this.zone, pw.this.how, base_sum=pw.reducers.sum(pw.this.I))
        grid = attach(grid, hourly, ["zone", "h"], n=("n", 0), c=("c", 0), I0=("I", 0.0))
        for k in (1, 2):  # I at h−1 and h−2: the hourly table shifted onto the hours after
            shifted = hourly.select(pw.this.zone, h=pw.this.h + k, I=pw.this.I)
            grid = attach(grid, shifted, ["zone", "h"], **{f"I{k}": ("I", 0.0)})
        grid = attach(grid, base, ["zone", "how"], base_sum=("base_sum", 0.0))
    else:
        grid = grid.select(*pw.this, n=0, c=0, I0=0.0, I1=0.0, I2=0.0, base_sum=0.0)

    # ---- density and traffic: observed (sensors' means summed), typical over the window ----
    def observed_typical(s, grid, obs, typ_sum, typ_n):
        if s is None:
            return grid.select(*pw.this, **{obs: None, typ_sum: 0.0, typ_n: 0})
        o = s.groupby(pw.this.zone, pw.this.h).reduce(
            pw.this.zone, pw.this.h, o=pw.reducers.sum(pw.this.m))
        typ = in_window(o).groupby(pw.this.zone, pw.this.how).reduce(
            pw.this.zone, pw.this.how, s=pw.reducers.sum(pw.this.o), k=pw.reducers.count())
        grid = attach(grid, o, ["zone", "h"], **{obs: ("o", None)})
        return attach(grid, typ, ["zone", "how"], **{typ_sum: ("s", 0.0), typ_n: ("k", 0)})

    grid = observed_typical(dens_s, grid, "obs", "typ_sum", "typ_n")
    grid = observed_typical(traf_s, grid, "tobs", "ttyp_sum", "ttyp_n")

    # ---- events and deployments over the hours they overlap (clipped to the grid) ----
    def over_hours(t):
        """The hours of the grid a record overlaps."""
        def hours_of(s, e, lo, hi):
            a, b = sm.overlap_hours(s, e)
            return list(range(max(a, lo), min(b, hi) + 1))

        t = with_clock(t)
        return t.select(*[t[c] for c in t.column_names() if c not in glob.column_names()],
                        h=pw.apply_with_type(hours_of, list[int], t.start, t.end, t.lo, t.hi)) \
            .flatten(pw.this.h)

    if events is not None:
        ev_h = over_hours(events).select(
            pw.this.zone, pw.this.h, att=pw.this.value,
            x=pw.apply_with_type(lambda a, k: a / 1000 * M.exposure_rates[k], float,
                                 pw.this.value, pw.this.kind),
            demo=pw.if_else(pw.this.kind == "demonstration", 1, 0)) \
            .groupby(pw.this.zone, pw.this.h).reduce(
                pw.this.zone, pw.this.h, E=pw.reducers.sum(pw.this.att),
                X=pw.reducers.sum(pw.this.x), demo=pw.reducers.max(pw.this.demo))
        spill = ev_h.join(spill_to, ev_h.zone == spill_to.n).select(
            zone=spill_to.z, h=ev_h.h, X=ev_h.X).groupby(pw.this.zone, pw.this.h).reduce(
                pw.this.zone, pw.this.h, spill_sum=pw.reducers.sum(pw.this.X))
        grid = attach(grid, ev_h, ["zone", "h"], E=("E", 0.0), X=("X", 0.0), demo=("demo", 0))
        grid = attach(grid, spill, ["zone", "h"], spill_sum=("spill_sum", 0.0))
    else:
        grid = grid.select(*pw.this, E=0.0, X=0.0, demo=0, spill_sum=0.0)
    if deployments is not None:
        dep_h = over_hours(deployments).groupby(pw.this.zone, pw.this.h).reduce(
            pw.this.zone, pw.this.h, deployed=pw.reducers.sum(pw.this.value))
        grid = attach(grid, dep_h, ["zone", "h"], deployed=("deployed", 0.0))
    else:
        grid = grid.select(*pw.this, deployed=0)

    # ---- weather: per hour the record that counts, city-wide ----
    if weather is not None:
        def factor(recs):
            best = None
            for kind, temp, precip, wind, issued, seq in recs:
                r = ("weather", seq, None, False, "", 0, (kind, temp, precip, wind, issued))
                best = r if best is None else sm.better_weather(best, r)
            return sm.weather_factor(M, best[sm.PAYLOAD])

        w_h = weather.select(
            h=hour(pw.this.ts),
            r=pw.make_tuple(pw.this.kind, pw.this.temp, pw.this.precip, pw.this.wind,
                            pw.this.issued, pw.this.seq)) \
            .groupby(pw.this.h).reduce(pw.this.h, rs=pw.reducers.tuple(pw.this.r))
        w_h = w_h.select(pw.this.h, f_w=pw.apply_with_type(factor, float, pw.this.rs), has_w=True)
        grid = attach(grid, w_h, ["h"], f_w=("f_w", 1.0), has_w=("has_w", False))
    else:
        grid = grid.select(*pw.this, f_w=1.0, has_w=False)

    # ---- the formula of one zone and hour ----
    def formula(zone, h, clock_h, last_h, I0, I1, I2, base_sum, obs, typ_sum, typ_n, E, X,
                spill_sum, demo, deployed, f_w, has_w, tobs, ttyp_sum, ttyp_n):
        values, (risk, load, fluidity) = sm.indicator(
            M, ZONES[zone], h, clock_h, last_h, I0, I1, I2, base_sum, obs, typ_sum, typ_n,
            E, X, spill_sum, demo, deployed, f_w, has_w, tobs, ttyp_sum, ttyp_n)
        return (risk, load, fluidity, json.dumps(values))

    rows = with_clock(grid).select(pw.this.zone, pw.this.clock_h, pw.this.h, pw.this.n, pw.this.c, res=pw.apply(
        formula, pw.this.zone, pw.this.h, pw.this.clock_h, pw.this.last_h, pw.this.I0,
        pw.this.I1, pw.this.I2,
        pw.this.base_sum, pw.this.obs, pw.this.typ_sum, pw.this.typ_n, pw.this.E, pw.this.X,
        pw.this.spill_sum, pw.this.demo, pw.this.deployed, pw.this.f_w, pw.this.has_w,
        pw.this.tobs, pw.this.ttyp_sum, pw.this.ttyp_n))
    rows = rows.select(pw.this.zone, pw.this.h, pw.this.clock_h, pw.this.n, pw.this.c, risk=pw.this.res[0],
                       load=pw.this.res[1], fl=pw.this.res[2], values=pw.this.res[3])

    # ---- trends: each row's series onto the three hours after ----
    shown = rows.filter(rows.h >= rows.clock_h - M.past_hours)
    for k in (1, 2, 3):  # the series at h−1, h−2, h−3: the rows shifted onto the hours after
        shifted = rows.select(pw.this.zone, h=pw.this.h + k,
                              s=pw.make_tuple(pw.this.risk, pw.this.load, pw.this.fl))
        shown = shown.join(shifted, shown.zone == shifted.zone, shown.h == shifted.h).select(
            *pw.left, **{f"p{k}": pw.right.s})

    def indicator_line(zone, h, n, c, risk, load, fl, values, p1, p2, p3):
        return sm.line(zone, h, json.loads(values), sm.trends(M, (risk, load, fl), [p1, p2, p3]),
                       n, c, M.version)

    lines = shown.select(line=pw.apply_with_type(
        indicator_line, str, pw.this.zone, pw.this.h, pw.this.n, pw.this.c, pw.this.risk,
        pw.this.load, pw.this.fl, pw.this.values, pw.this.p1, pw.this.p2, pw.this.p3))

    # ---- clashes: events self-joined on the zone ----
    if events is not None:
        other = events.copy()
        pairs = events.join(other, events.zone == other.zone).filter(
            (pw.left.rid < pw.right.rid) & (pw.left.start < pw.right.end)
            & (pw.right.start < pw.left.end))
        clash = pairs.select(line=pw.apply_with_type(
            lambda z, a, s1, e1, n1, k1, b, s2, e2, n2, k2: next(iter(
                sm.clashes(ZONES[z], [(a, s1, e1, n1, k1), (b, s2, e2, n2, k2)])), ""),
            str, pw.left.zone, pw.left.rid, pw.left.start, pw.left.end, pw.left.value, pw.left.kind,
            pw.right.rid, pw.right.start, pw.right.end, pw.right.value, pw.right.kind))
        lines = pw.Table.concat_reindex(lines, clash.filter(clash.line != ""))

    # ---- output: the final lines, written when the run ends ----
    final = {}

    def on_change(key, row, time, is_addition):
        if is_addition:
            final[key] = row["line"]
        elif final.get(key) == row["line"]:
            del final[key]

    def on_end():
        with open(ARGS.output, "w") as f:
            for text in final.values():
                f.write(text + "\n")

    pw.io.subscribe(lines, on_change=on_change, on_end=on_end)
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)
    if not final:
        sys.exit("no output: no counted incident or density record, a replay without a clock")


if __name__ == "__main__":
    main()
