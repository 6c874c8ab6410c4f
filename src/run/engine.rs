//! The engine loop of `vigie run`, on a thread of its own: timely worker 0 (the leader) takes
//! the records the ingest log read back, then the batches the log commits, and closes an
//! epoch every `ingest.epoch_ms` with the clock at the wall clock's hour (`docs/model.md`:
//! live, the clock is the wall clock). After each epoch with news it writes what changed to
//! the sinks (the store, InfluxDB), keeps the index of recent records, then hands the changes
//! to the observers (the server's board, the alerting). It ends when the log's side closes
//! (every source has stopped), after a last epoch and a flush of the sinks.
//!
//! With `--workers N` (and in a cluster, `--processes`), the other workers build the same
//! dataflow with no input of their own ([`follow`]): the leader's records are exchanged to
//! them by key, so the graph's state and work are spread over every worker, and the collected
//! output comes back to the leader. Ingest (HTTP, MQTT, the log) stays on the leader's
//! process; the other processes of a cluster run followers only.
//!
//! Also here: which records of the log still matter ([`survivors`], [`Survivors`]), the rule
//! of the log's compactions.

use crate::sink::{change_points, Sinks};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use vigie_config::Config;
use vigie_connectors::ingest::Keep;
use vigie_engine::{timely, Driver, Expiry, GraphParams};
use vigie_model::clock::{now_ms, wall_hour};
use vigie_model::{Changes, EngineStats, Feed, FeedHealth, Latency, Phase, Point, Record};
use vigie_queries::recent::RecentRecords;

/// Something that watches each complete epoch's changes, after the sinks have taken them:
/// `(changes, the clock hour, feed health)`. Called on the engine thread; keep it short (hand
/// work to another thread).
pub type Observer = Box<dyn FnMut(&Changes, i64, &FeedHealth) + Send>;

/// Something with points of its own for the store (the alert history): drained at each
/// epoch, written in the same revision as the epoch's changes.
pub type PointSource = Box<dyn FnMut() -> Vec<Point> + Send>;

/// Gives the live sources' rejected lines so far, by feed name (the feeds' health counts them).
pub type Rejections = Box<dyn Fn() -> BTreeMap<String, u64> + Send>;

/// What the engine thread is handed before it starts.
pub struct Engine {
    pub config: Arc<Config>,
    /// The sinks, opened (the store shared with the server).
    pub sinks: Sinks,
    /// What the ingest log reads back, in log order, in batches; closed once it is all read.
    pub recovered: mpsc::Receiver<Vec<Record>>,
    /// The batches the log commits, stamped with their arrival; closed when the sources stop.
    pub batches: mpsc::Receiver<(Instant, Vec<Record>)>,
    pub epoch: Duration,
    pub stats: Arc<EngineStats>,
    pub recent: Arc<RecentRecords>,
    pub rejections: Rejections,
    pub observers: Vec<Observer>,
    pub point_sources: Vec<PointSource>,
}

/// The Sync wrapper timely asks of what its closure captures: moved out once, by worker 0.
struct Once<T>(Mutex<Option<T>>);

impl<T> Once<T> {
    fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Runs the engine on the workers of `cluster` until the log's side closes: worker 0 leads,
/// the others follow.
pub fn run(engine: Engine, cluster: timely::Config) -> anyhow::Result<()> {
    let params = GraphParams::from_config(&engine.config).live();
    let leader = Once(Mutex::new(Some(engine)));
    let guards = timely::execute(cluster, move |worker| {
        if worker.index() != 0 {
            follow_on(worker, &params);
            return Ok(());
        }
        let engine = leader.take().expect("worker 0 runs once");
        lead(worker, engine)
    })
    .map_err(|e| anyhow::anyhow!("starting the timely workers: {e}"))?;
    for result in guards.join() {
        result.map_err(|e| anyhow::anyhow!("a timely worker failed: {e}"))??;
    }
    Ok(())
}

/// The workers of a process of a cluster other than the first: followers only, until the
/// leader (on process 0) closes.
pub fn follow(config: &Config, cluster: timely::Config) -> anyhow::Result<()> {
    let params = GraphParams::from_config(config).live();
    let guards = timely::execute(cluster, move |worker| follow_on(worker, &params))
        .map_err(|e| anyhow::anyhow!("starting the timely workers: {e}"))?;
    for result in guards.join() {
        result.map_err(|e| anyhow::anyhow!("a timely worker failed: {e}"))?;
    }
    Ok(())
}

/// A follower: the dataflow with its inputs closed at once, stepped (parked when idle)
/// until every output is complete, which is when the leader has closed its inputs.
fn follow_on(worker: &mut timely::worker::Worker, params: &GraphParams) {
    let mut driver = Driver::new(worker, params);
    driver.collected.borrow_mut().final_only();
    driver.close();
    while !driver.finished() {
        worker.step_or_park(None);
    }
}

/// The leader: everything the module's doc says, on worker 0.
fn lead(worker: &mut timely::worker::Worker, engine: Engine) -> anyhow::Result<()> {
    {
        let Engine {
            config,
            mut sinks,
            recovered,
            batches,
            epoch,
            stats,
            recent,
            rejections,
            mut observers,
            mut point_sources,
        } = engine;
        let params = GraphParams::from_config(&config).live();
        let zone_ids: Vec<String> = config.zones.iter().map(|z| z.id.clone()).collect();
        let mut driver = Driver::new(worker, &params);
        driver.collected.borrow_mut().track_changes();
        let health = FeedHealth::default();
        let mut latency =
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
        // An epoch's work, from its close until its changes are published (µs).
        let mut work =
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
        // The log read back, a batch an epoch: each epoch's state is consolidated before the
        // next batch is read, so memory follows the state, not the log.
        // A batch into the dataflow, counted, indexed for explain and seen by the health.
        let take = |driver: &mut Driver, batch: Vec<Record>| {
            stats
                .records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            recent.insert(&batch);
            for r in batch {
                health.accept(&r);
                stats.last_event_us.fetch_max(r.ts, Ordering::Relaxed);
                driver.insert(r);
            }
        };
        let mut n = 0usize;
        driver.set_clock_hour(wall_hour());
        for batch in recovered {
            n += batch.len();
            take(&mut driver, batch);
            let e = driver.advance();
            driver.wait(worker, e);
        }
        if n > 0 {
            tracing::info!("vigie run: {n} records read back from the ingest log");
        }
        let mut first = true;
        // Epochs close on a fixed cadence: one period after the previous one was due, not one
        // period after its work ended, so a record that arrives while an epoch is computed
        // waits for the rest of the period, not for the work and a whole period more. An epoch
        // whose work outlasts the period is followed at once by one with all that came
        // meanwhile (not a batch at a time: under overload, epochs stay large).
        let mut deadline = Instant::now();
        let mut last_clock = None;
        let mut last_rejections = None;
        loop {
            let mut arrived: Vec<(Instant, usize)> = Vec::new();
            let mut closed = false;
            if !first {
                loop {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match batches.recv_timeout(wait) {
                        Ok((at, batch)) => {
                            arrived.push((at, batch.len()));
                            stats
                                .queued
                                .fetch_sub(batch.len() as i64, Ordering::Relaxed);
                            take(&mut driver, batch);
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            let hour = wall_hour();
            let closed_at = Instant::now();
            driver.set_clock_hour(hour);
            recent.advance(hour);
            let e = driver.advance();
            driver.wait(worker, e);
            stats.epochs.fetch_add(1, Ordering::Relaxed);
            let computed = Instant::now();
            stats.add_phase(Phase::Dataflow, computed - closed_at);
            let extra: Vec<Point> = point_sources.iter_mut().flat_map(|p| p()).collect();
            // Rejections alone (no record accepted) also show in the feeds' health.
            let rejected = rejections();
            let rejections_changed = last_rejections.as_ref() != Some(&rejected);
            if first
                || !arrived.is_empty()
                || last_clock != Some(hour)
                || rejections_changed
                || !extra.is_empty()
            {
                health.set_live_rejections(&rejected);
                last_rejections = Some(rejected);
                let changes = driver.collected.borrow_mut().drain();
                let mut points = change_points(&changes, &zone_ids);
                points.extend(extra);
                // Live, a revision is the wall-clock time it was computed at.
                sinks.publish(points, &health, now_ms(), Some(e))?;
                stats.store_writes.fetch_add(1, Ordering::Relaxed);
                let written = Instant::now();
                stats.add_phase(Phase::Sinks, written - computed);
                for observe in observers.iter_mut() {
                    observe(&changes, hour, &health);
                }
                let done = Instant::now();
                stats.add_phase(Phase::Publish, done - written);
                work.saturating_record(done.duration_since(closed_at).as_micros().max(1) as u64);
                stats.set_epoch_work(quantiles(&work));
                for (at, n) in arrived {
                    latency.saturating_record_n(
                        done.duration_since(at).as_micros().max(1) as u64,
                        n as u64,
                    );
                }
                if !latency.is_empty() {
                    stats.set_latency(quantiles(&latency));
                }
            }
            last_clock = Some(hour);
            first = false;
            deadline = (deadline + epoch).max(Instant::now());
            if closed {
                break;
            }
        }
        driver.close();
        worker.step_while(|| !driver.finished());
        sinks.finish(Duration::from_secs(30))?;
        Ok(())
    }
}

/// The quantiles `/metrics` shows of a histogram of microseconds, in seconds.
fn quantiles(h: &Histogram<u64>) -> Latency {
    let q = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
    Latency {
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        count: h.len(),
    }
}

/// The records of the ingest log that still matter at clock hour `clock_hour`: of each
/// upserted `(feed, id)`, the version that wins (greatest `ts`, then `seq`; a cancellation
/// included); of the others, those the engine would not retire at once (the rule of
/// [`Expiry`]: out of the horizon and of the baseline window). The order is kept.
#[cfg(test)]
pub fn survivors(params: &GraphParams, clock_hour: i64, all: Vec<Record>) -> Vec<Record> {
    let mut keep = Survivors::new(params, clock_hour);
    all.iter().for_each(|r| keep.observe(r));
    all.into_iter().filter(|r| keep.keeps(r)).collect()
}

/// [`survivors`] as the running compaction asks it, in two passes over the log: the winner of
/// each upserted id is known after the first.
pub struct Survivors {
    clock_hour: i64,
    expiry: Expiry,
    winners: std::collections::HashMap<(Feed, String), (i64, u64)>,
}

impl Survivors {
    pub fn new(params: &GraphParams, clock_hour: i64) -> Survivors {
        Survivors {
            clock_hour,
            expiry: Expiry::new(params),
            winners: Default::default(),
        }
    }
}

impl Keep for Survivors {
    fn observe(&mut self, r: &Record) {
        if let Some(id) = &r.id {
            let w = self
                .winners
                .entry((r.feed, id.clone()))
                .or_insert((r.ts, r.seq));
            if (r.ts, r.seq) > *w {
                *w = (r.ts, r.seq);
            }
        }
    }

    fn keeps(&mut self, r: &Record) -> bool {
        if let Some(id) = &r.id {
            if self.winners.get(&(r.feed, id.clone())) != Some(&(r.ts, r.seq)) {
                return false;
            }
        }
        self.expiry
            .expires_at(r)
            .is_none_or(|at| at > self.clock_hour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_model::Body;

    fn rec(feed: Feed, ts_h: i64, seq: u64, id: Option<&str>, body: bool) -> Record {
        Record {
            feed,
            ts: ts_h * 3_600_000_000,
            seq,
            id: id.map(str::to_string),
            body: body.then_some(Body::Incident {
                zone: 0,
                severity: 2,
            }),
        }
    }

    #[test]
    fn compaction_keeps_upsert_winners_and_what_the_clock_has_not_retired() {
        let config = Config::embedded_default();
        let params = GraphParams::from_config(&config);
        let now = 500_000;
        let all = vec![
            rec(Feed::Incident, now - 1, 0, Some("a"), true),
            rec(Feed::Incident, now - 2, 1, Some("a"), true), // older ts: superseded
            rec(Feed::Incident, now - 1, 2, Some("b"), true),
            rec(Feed::Incident, now - 1, 3, Some("b"), false), // a cancellation wins
            rec(Feed::Incident, now - 24 * 800, 4, None, true), // out of every window
            rec(Feed::Incident, now - 24 * 30, 5, None, true), // in the baseline window
        ];
        let seqs: Vec<u64> = survivors(&params, now, all).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![0, 3, 5]);
    }
}
