//! Measuring a command as a whole: wall time, the peak of the summed resident memory of its
//! process tree (a Python peer's engine threads, a JVM started by a child…) sampled every
//! 50 ms, or the high-water mark of the command's own process (`VmHWM`, read every 5 ms) if
//! greater — a run of a third of a second can peak between two samples — the CPU the tree
//! used, and the CPU other processes used meanwhile — the machines are shared, so a run
//! during which others worked is flagged rather than trusted. Read from `/proc` (Linux).

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// What one run of a command cost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    pub wall_s: f64,
    pub peak_rss_bytes: u64,
    pub tree_cpu_s: f64,
    /// CPU seconds used by processes outside the tree during the run.
    pub foreign_cpu_s: f64,
    /// Whether the machine was quiet when the run started.
    pub quiet_start: bool,
}

impl Measured {
    /// Another process used more than a tenth of the run's wall time on some CPU.
    pub fn disturbed(&self) -> bool {
        self.foreign_cpu_s > 0.1 * self.wall_s
    }
}

fn ticks_per_s() -> f64 {
    // The kernel's USER_HZ, 100 on every Linux this runs on.
    100.0
}

fn page_bytes() -> u64 {
    4096
}

/// CPU seconds the whole machine has been busy (all CPUs, less idle and iowait).
pub fn machine_busy_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return 0.0;
    }
    (v.iter().sum::<f64>() - v[3] - v[4]) / ticks_per_s()
}

/// CPU seconds of this process, and of its children that were waited for (with theirs).
fn self_and_children_cpu_s() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .rfind(')')
        .map(|i| &stat[i + 2..])
        .unwrap_or_default()
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if f.len() < 15 {
        return (0.0, 0.0);
    }
    (
        (f[11] + f[12]) as f64 / ticks_per_s(),
        (f[13] + f[14]) as f64 / ticks_per_s(),
    )
}

/// pid → (parent, CPU ticks, resident pages) of every process.
fn processes() -> HashMap<u32, (u32, u64, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 22 {
            continue;
        }
        let num = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        out.insert(pid, (num(1) as u32, num(11) + num(12), num(21)));
    }
    out
}

/// The pids of `root` and its descendants.
fn tree(procs: &HashMap<u32, (u32, u64, u64)>, root: u32) -> Vec<u32> {
    let mut kids: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, (ppid, _, _)) in procs {
        kids.entry(*ppid).or_default().push(*pid);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if procs.contains_key(&p) {
            out.push(p);
        }
        stack.extend(kids.get(&p).into_iter().flatten());
    }
    out
}

/// Waits until the machine is quiet (under a tenth of one CPU busy over a second), at most
/// `max`; whether it became quiet.
pub fn wait_quiet(max: Duration) -> bool {
    let end = Instant::now() + max;
    while Instant::now() < end {
        let b = machine_busy_s();
        std::thread::sleep(Duration::from_secs(1));
        if machine_busy_s() - b < 0.1 {
            return true;
        }
    }
    false
}

/// Runs `cmd` to its end (output as configured on it), sampling its process tree every 50 ms,
/// and the high-water mark of `cmd`'s own process every 5 ms; the peak memory is the greater of
/// the two. A failed command is an error with its status.
pub fn run(cmd: &mut Command, quiet_wait: Duration) -> anyhow::Result<Measured> {
    let quiet_start = wait_quiet(quiet_wait);
    let busy0 = machine_busy_s();
    let (self0, children0) = self_and_children_cpu_s();
    let t = Instant::now();
    let mut child = cmd.spawn()?;
    let root = child.id();
    let mut peak = 0u64;
    let mut cpu: HashMap<u32, u64> = HashMap::new();
    let status = 'run: loop {
        let procs = processes();
        let members = tree(&procs, root);
        peak = peak.max(members.iter().map(|p| procs[p].2).sum::<u64>() * page_bytes());
        for p in members {
            let e = cpu.entry(p).or_default();
            *e = (*e).max(procs[&p].1);
        }
        // The tree's samples miss what happens between two of them, the end of a short run in
        // particular. The root's `VmHWM` is the kernel's high-water mark of its memory since
        // its exec: read often, it misses only what the last few milliseconds add. (Not
        // `wait4`'s `ru_maxrss`: it counts the memory of the process that spawned the command,
        // this harness, as a floor.)
        for _ in 0..10 {
            if let Some(hwm) = status_bytes(root, "VmHWM:") {
                peak = peak.max(hwm);
            }
            if let Some(s) = child.try_wait()? {
                break 'run s;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let wall_s = t.elapsed().as_secs_f64();
    let busy = machine_busy_s() - busy0;
    if !status.success() {
        anyhow::bail!("{cmd:?} failed: {status}");
    }
    let (self1, children1) = self_and_children_cpu_s();
    // The tree's CPU: what the samples saw, or what the reaped child reports with its own
    // reaped children, whichever is larger (the samples miss the last 50 ms).
    let tree_cpu_s = (cpu.values().sum::<u64>() as f64 / ticks_per_s()).max(children1 - children0);
    // This sampler's own CPU is not foreign.
    let busy = busy - (self1 - self0);
    Ok(Measured {
        wall_s,
        peak_rss_bytes: peak,
        tree_cpu_s,
        foreign_cpu_s: (busy - tree_cpu_s).max(0.0),
        quiet_start,
    })
}

/// Resident memory of one process, in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// Anonymous resident memory of one process (the heap and stacks, not mapped files), bytes.
pub fn rss_anon_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "RssAnon:")
}

fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_command_is_measured_with_its_children() {
        // A shell whose child holds ~64 MiB: the tree's peak covers it.
        let m = super::run(
            std::process::Command::new("sh").args([
                "-c",
                "python3 -c 'b = bytearray(64 << 20); import time; time.sleep(0.5)'",
            ]),
            std::time::Duration::from_secs(0),
        )
        .unwrap();
        assert!(m.wall_s >= 0.5, "{m:?}");
        assert!(m.peak_rss_bytes > 64 << 20, "{m:?}");
        // A peak at the very end, between two samples, is counted too.
        let m = super::run(
            std::process::Command::new("python3").args(["-c", "b = bytearray(96 << 20)"]),
            std::time::Duration::from_secs(0),
        )
        .unwrap();
        assert!(m.peak_rss_bytes > 96 << 20, "{m:?}");
        assert!(super::run(
            &mut std::process::Command::new("false"),
            std::time::Duration::ZERO
        )
        .is_err());
    }
}
