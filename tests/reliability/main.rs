//! Reliability suites: crash, fault, bad input and secret hygiene, on the
//! same real control plane and simulator rig as `tests/e2e` (both use
//! `test-support`). `RELIABILITY_FULL=1` runs the full sizes
//! (`make reliability`); without it the short versions run (`make test`).
//! The numbers of each run are printed as `RELIABILITY ...` lines.
//!
//! Tests run one at a time: the fault suite restarts the API server and
//! etcd, which would disturb a test running next to it.

mod bad_input;
mod common;
mod crash;
mod crash_connections;
mod faults;
mod hygiene;

use std::process::ExitCode;

use test_support::{Arguments, Env};

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let mut tests = crash::tests();
    tests.extend(crash_connections::tests());
    tests.extend(faults::tests());
    tests.extend(bad_input::tests());
    tests.extend(hygiene::tests());
    test_support::run(&args, tests, "the test control plane", || async {
        eprintln!(
            "reliability suites, {} sizes",
            if common::full() { "full" } else { "short" }
        );
        Env::start(env!("CARGO_BIN_EXE_collibra-oauth-operator")).await
    })
}
