//! Alerting for vigie: operators are told, once and in time, when a zone crosses a line —
//! now or in the forecast — and when it is over; and when a feed or a source falls silent.
//!
//! - [`eval`]: the pure, deterministic evaluator (rules from `[alerts]` and the API, a state
//!   machine per (rule, zone) with hysteresis, `for_s`, `resolve_for_s`, look-ahead, silences),
//!   driven by explicit `now` timestamps.
//! - [`service`]: the evaluator behind a lock, with its state saved atomically on disk, the
//!   history journal, the notification outbox, the live stream of events
//!   ([`service::Service::subscribe`]) and the history points for the store.
//! - [`notify`]: delivery to webhooks and MQTT, retried with a capped backoff.
//!
//! Rule format and on-disk formats: `alerts/FORMAT.md`.

pub mod eval;
pub mod notify;
pub mod service;

pub use eval::{AlertEvent, AlertView, Evaluator, EventKind, State};
pub use service::{ActionError, HistoryEntry, RuleView, Service};
