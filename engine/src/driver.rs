//! The worker-side driver: builds the graph in a worker, feeds it records in epochs, retires
//! records once they can no longer matter, and collects the output.
//!
//! Retiring is how state stays bounded on years of data: a point record (incident, density,
//! weather) of hour `g` matters while `g` is within `past_hours + 5` hours of the clock (the
//! horizon, the three hours of the trend and the two of `recent`) or in the baseline window of
//! `W` weeks. Once the clock has passed both, no result at that clock or any later one depends
//! on the record (the clock never goes back), so the driver that fed it retracts it, and the
//! arrangements downstream shed it at their next compaction. The test is monotone in `g`, which
//! keeps upserts exact: when a version of an id is retired, every older version is too.
//! Events and deployments are the agenda (thousands a year, not millions) and are kept, so
//! clashes cover all of history; their per-hour effect is computed over the horizon only.

use crate::calendar::CachedCalendar;
use crate::graph::{build, GraphParams};
use differential_dataflow::input::{Input, InputSession};
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;
use timely::dataflow::operators::core::{Exchange, Inspect, Probe};
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;
use vigie_model::time::hour_of;
use vigie_model::{ClashRow, Feed, IndicatorRow, Record};

/// When records stop mattering.
#[derive(Clone)]
pub struct Expiry {
    past_hours: i64,
    weeks: i64,
    cal: CachedCalendar,
}

impl Expiry {
    /// The rule for a graph's parameters.
    pub fn new(params: &GraphParams) -> Self {
        Expiry {
            past_hours: params.model.past_hours,
            weeks: params.model.weeks,
            cal: CachedCalendar::new(params.calendar),
        }
    }

    /// The clock hour from which `r` no longer affects any result, or `None` if it is kept.
    pub fn expires_at(&mut self, r: &Record) -> Option<i64> {
        match r.feed {
            Feed::Incident | Feed::Density | Feed::Weather => {
                let g = hour_of(r.ts);
                let horizon = g + self.past_hours + 6;
                let week = self.cal.week(g);
                let window = self.cal.week_start_hour(week + self.weeks + 1);
                Some(horizon.max(window))
            }
            Feed::Event | Feed::Deployment => None,
        }
    }
}

/// The accumulated output, collected on worker 0.
#[derive(Default, Debug)]
pub struct Collected {
    pub indicators: HashMap<IndicatorRow, isize>,
    pub clashes: HashMap<ClashRow, isize>,
    /// Output updates received (each row change is a retraction and an insertion).
    pub updates: u64,
}

impl Collected {
    /// The current indicator rows, sorted by zone and hour.
    pub fn indicator_rows(&self) -> Vec<IndicatorRow> {
        let mut v: Vec<IndicatorRow> = self
            .indicators
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(r, _)| r.clone())
            .collect();
        v.sort_by_key(|r| (r.zone, r.hour));
        v
    }

    /// The current clash rows, sorted.
    pub fn clash_rows(&self) -> Vec<ClashRow> {
        let mut v: Vec<ClashRow> = self
            .clashes
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(r, _)| r.clone())
            .collect();
        v.sort();
        v
    }
}

fn apply<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, isize>,
    updates: &[(K, u64, isize)],
) {
    for (k, _t, d) in updates {
        let e = map.entry(k.clone()).or_insert(0);
        *e += d;
        if *e == 0 {
            map.remove(k);
        }
    }
}

/// Feeds one worker's share of the records into the graph.
pub struct Driver {
    input: Option<InputSession<u64, Record, isize>>,
    probe: ProbeHandle<u64>,
    clock: Rc<Cell<Option<i64>>>,
    expiry: Expiry,
    pending: BinaryHeap<Reverse<(i64, Record)>>,
    /// The output, on worker 0 (empty elsewhere).
    pub collected: Rc<RefCell<Collected>>,
    /// Records retracted because they expired.
    pub retired: u64,
}

impl Driver {
    /// Builds the graph in `worker`; the output is gathered on worker 0.
    pub fn new(worker: &mut Worker, params: &GraphParams) -> Driver {
        let collected = Rc::new(RefCell::new(Collected::default()));
        let sink = collected.clone();
        let sink2 = collected.clone();
        let (input, probe, clock) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, records) = scope.new_collection::<Record, isize>();
            let out = build(records, params);
            let probe = ProbeHandle::new();
            out.indicators
                .inner
                .exchange(|_| 0)
                .inspect_core(move |event| {
                    if let Ok((_, batch)) = event {
                        let mut c = sink.borrow_mut();
                        c.updates += batch.len() as u64;
                        apply(&mut c.indicators, batch);
                    }
                })
                .probe_with(&probe);
            out.clashes
                .inner
                .exchange(|_| 0)
                .inspect_core(move |event| {
                    if let Ok((_, batch)) = event {
                        apply(&mut sink2.borrow_mut().clashes, batch);
                    }
                })
                .probe_with(&probe);
            (input, probe, out.clock)
        });
        Driver {
            input: Some(input),
            probe,
            clock,
            expiry: Expiry::new(params),
            pending: BinaryHeap::new(),
            collected,
            retired: 0,
        }
    }

    /// Adds a record in the current epoch.
    pub fn insert(&mut self, r: Record) {
        if let Some(at) = self.expiry.expires_at(&r) {
            if self.clock.get().is_some_and(|c| c >= at) {
                // Already irrelevant: it would be retracted at once.
                self.retired += 1;
                return;
            }
            self.pending.push(Reverse((at, r.clone())));
        }
        self.input.as_mut().expect("input open").insert(r);
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.input.as_ref().map_or(u64::MAX, |i| *i.time())
    }

    /// Closes the current epoch: retracts what the clock has made irrelevant, then moves to the
    /// next epoch. Returns the epoch closed.
    pub fn advance(&mut self) -> u64 {
        if let Some(clock) = self.clock.get() {
            while self
                .pending
                .peek()
                .is_some_and(|Reverse((at, _))| *at <= clock)
            {
                let Reverse((_, r)) = self.pending.pop().expect("peeked");
                self.input.as_mut().expect("input open").remove(r);
                self.retired += 1;
            }
        }
        let input = self.input.as_mut().expect("input open");
        let closed = *input.time();
        input.advance_to(closed + 1);
        input.flush();
        closed
    }

    /// Closes the input: no more records from this worker.
    pub fn close(&mut self) {
        self.input = None;
    }

    /// True once the input is closed and every output is complete.
    pub fn finished(&self) -> bool {
        self.probe.done()
    }

    /// True once every output of `epoch` is complete.
    pub fn done(&self, epoch: u64) -> bool {
        !self.probe.less_equal(&epoch)
    }

    /// Steps the worker until `epoch` is complete.
    pub fn wait(&self, worker: &mut Worker, epoch: u64) {
        worker.step_while(|| !self.done(epoch));
    }

    /// The clock's hour as this worker knows it.
    pub fn clock(&self) -> Option<i64> {
        self.clock.get()
    }

    /// Records held for retiring.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
