//! The timely workers and processes of a command (`replay`, `run`): the options, and the
//! timely configuration they make.

use anyhow::{bail, Context};
use std::path::PathBuf;
use vigie_engine::timely;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Timely worker threads in this process (default: the configuration's `engine.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Number of processes in a timely cluster (with --process and --hostfile).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// This process's index in the cluster, from 0.
    #[arg(long, default_value_t = 0)]
    pub process: usize,
    /// File with one `host:port` per line, one line per process.
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
}

impl ClusterArgs {
    /// The worker threads of this process: `--workers`, else `configured`, at least one.
    pub fn workers(&self, configured: usize) -> usize {
        self.workers.unwrap_or(configured).max(1)
    }

    /// The timely configuration: `workers` threads in this process, and, in a cluster, the
    /// addresses of the hostfile's first `--processes` lines.
    pub fn timely_config(&self, workers: usize) -> anyhow::Result<timely::Config> {
        if self.processes <= 1 {
            return Ok(timely::Config::process(workers));
        }
        let hostfile = self
            .hostfile
            .as_ref()
            .context("--processes > 1 needs --hostfile")?;
        let text = std::fs::read_to_string(hostfile)
            .with_context(|| format!("reading {}", hostfile.display()))?;
        let addresses: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if addresses.len() < self.processes {
            bail!(
                "{} lists {} hosts for {} processes",
                hostfile.display(),
                addresses.len(),
                self.processes
            );
        }
        if self.process >= self.processes {
            bail!(
                "--process {} is not below --processes {}",
                self.process,
                self.processes
            );
        }
        Ok(timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: workers,
                process: self.process,
                addresses: addresses[..self.processes].to_vec(),
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        })
    }
}
