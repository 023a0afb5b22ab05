//! A short run of `collibra-oauth-bench --mode latency` on the test control
//! plane, so that the mode cannot rot: a few resident objects, three single
//! samples, a burst of three, a three-step floor. It checks that every
//! sample was recorded and every figure is finite; it measures nothing.
//!
//! The operator binary is the debug build next to the benchmark's
//! (`cargo test --workspace`, as `make test` runs it, builds both);
//! `BENCH_SMOKE_OPERATOR` names another.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// The whole run, control plane start included, takes well under this.
const LIMIT: Duration = Duration::from_secs(240);

fn operator_bin(bench: &std::path::Path) -> PathBuf {
    if let Some(p) = std::env::var_os("BENCH_SMOKE_OPERATOR") {
        return PathBuf::from(p);
    }
    bench
        .parent()
        .map(|d| d.join("collibra-oauth-operator"))
        .unwrap_or_default()
}

fn finite_positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "{what} = {x}, expected > 0");
    x
}

/// A summary of `n` samples whose percentiles are finite and ordered.
fn check_summary(s: &Value, n: u64, what: &str) {
    assert_eq!(s["n"].as_u64(), Some(n), "{what}: samples recorded: {s}");
    let p50 = finite_positive(&s["p50"], &format!("{what} p50"));
    let p90 = finite_positive(&s["p90"], &format!("{what} p90"));
    let p99 = finite_positive(&s["p99"], &format!("{what} p99"));
    let max = finite_positive(&s["max"], &format!("{what} max"));
    assert!(p50 <= p90 && p90 <= p99 && p99 <= max, "{what}: {s}");
}

#[test]
fn latency_mode_records_samples_and_a_floor() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_collibra-oauth-bench"));
    let operator = operator_bin(&bench);
    assert!(
        operator.exists(),
        "the operator binary {} is missing: build it with `cargo build -p collibra-oauth-operator` \
         (`cargo test --workspace` does), or set BENCH_SMOKE_OPERATOR",
        operator.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("latency.json");
    let log = dir.path().join("operator.log");
    let began = Instant::now();
    let mut child = Command::new(&bench)
        .args(["--mode", "latency", "--operator"])
        .arg(&operator)
        .args([
            "--resident",
            "0,5",
            "--samples",
            "3",
            "--spacing",
            "50ms",
            "--bursts",
            "3",
            "--floor-samples",
            "3",
            "--sample-timeout",
            "30s",
            "--latency-ms",
            "5",
            // No resync inside so short a run.
            "--resync",
            "10m",
            "--json",
        ])
        .arg(&json)
        .arg("--log")
        .arg(&log)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting collibra-oauth-bench");
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the benchmark") {
            break status;
        }
        if began.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "collibra-oauth-bench --mode latency did not finish within {LIMIT:?}; operator log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "collibra-oauth-bench --mode latency failed ({status}); its stderr is above; operator log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("the report is JSON");
    assert_eq!(report["mode"], "latency");
    let phases = report["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 2, "one phase per R: {report}");
    for (phase, r) in phases.iter().zip([0u64, 5]) {
        let what = format!("R={r}");
        assert!(
            phase["resident"].as_u64().is_some_and(|n| n >= r),
            "{what}: resident {}",
            phase["resident"]
        );
        check_summary(
            &phase["single"]["secret_ms"],
            3,
            &format!("{what} single Secret"),
        );
        check_summary(
            &phase["single"]["ready_ms"],
            3,
            &format!("{what} single Ready"),
        );
        assert!(
            phase["single"]["secret_ms"]["p50"].as_f64()
                <= phase["single"]["ready_ms"]["p50"].as_f64(),
            "{what}: the Secret comes before Ready: {}",
            phase["single"]
        );
        let floor = &phase["floor"];
        check_summary(
            &floor["secret_ms"],
            3,
            &format!("{what} floor to the Secret"),
        );
        check_summary(&floor["ready_ms"], 3, &format!("{what} floor to Ready"));
        finite_positive(
            &floor["steps_ms"]["backend_post"]["p50"],
            "the floor's POST",
        );
        finite_positive(&phase["single"]["ready_p99_to_floor"], "p99 / floor");
        let bursts = phase["bursts"].as_array().expect("bursts");
        assert_eq!(bursts.len(), 1, "{what}: one burst: {phase}");
        assert_eq!(bursts[0]["size"], 3);
        check_summary(&bursts[0]["ready_ms"], 3, &format!("{what} burst Ready"));
        finite_positive(&bursts[0]["all_ready_seconds"], "burst: all Ready");
        finite_positive(&bursts[0]["post_floor_seconds"], "burst: POST floor");
        finite_positive(&bursts[0]["all_ready_to_post_floor"], "burst ratio");
        // The operator registered each sample once in Collibra.
        let posts = phase["single"]["requests"]["collibra register"].as_u64();
        assert_eq!(posts, Some(3), "{what}: {}", phase["single"]["requests"]);
    }
    eprintln!(
        "latency smoke run took {:.1}s",
        began.elapsed().as_secs_f64()
    );
}
