//! The commands of `vigie` other than `run` (which is `crate::run`), one module each.

pub mod backtest;
pub mod check_config;
pub mod cluster;
pub mod mqtt_acl;
pub mod progress;
pub mod query;
pub mod replay;
