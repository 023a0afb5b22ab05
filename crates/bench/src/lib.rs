//! Shared pieces of the benchmarks (`collibra-oauth-bench` and
//! `collibra-oauth-bench-peer`): a process's figures from /proc, Prometheus
//! text, and the machine's facts that every report records.

use std::collections::BTreeMap;

/// Resource use of a process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct Proc {
    /// Peak resident set (VmHWM), KiB.
    pub hwm_kib: u64,
    /// Resident set now (VmRSS), KiB.
    pub rss_kib: u64,
    /// utime + stime, seconds.
    pub cpu_secs: f64,
}

impl Proc {
    /// Reads `/proc/PID/status` and `/proc/PID/stat`.
    pub fn read(pid: u32) -> anyhow::Result<Proc> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces): state is
        // field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let hz = rustix::param::clock_ticks_per_second() as f64;
        Ok(Proc {
            hwm_kib: kib("VmHWM:"),
            rss_kib: kib("VmRSS:"),
            cpu_secs: (ticks(11) + ticks(12)) as f64 / hz,
        })
    }
}

/// The samples of a Prometheus text exposition.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    samples: Vec<(String, String, f64)>,
}

impl Metrics {
    /// Parses the text format (`name{labels} value` lines; comments skipped).
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let value = value.parse::<f64>().ok()?;
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                Some((name.to_owned(), labels.to_owned(), value))
            })
            .collect();
        Metrics { samples }
    }

    /// Whether any sample of `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// The sum over all samples of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }

    /// The samples of `name` summed per value of `label`.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let key = format!("{label}=\"");
        let mut out = BTreeMap::new();
        for (n, labels, v) in &self.samples {
            if n != name {
                continue;
            }
            let value = labels
                .split_once(&key)
                .and_then(|(_, r)| r.split_once('"'))
                .map(|(v, _)| v.to_owned())
                .unwrap_or_default();
            *out.entry(value).or_insert(0.0) += v;
        }
        out
    }
}

/// Rounds to three decimals, for reports.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The load averages (1, 5, 15 minutes) as `/proc/loadavg` gives them.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// MemTotal in KiB.
pub fn meminfo_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Sends SIGTERM to `pid`.
pub fn send_sigterm(pid: u32) -> std::io::Result<std::process::ExitStatus> {
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
}
