//! Reliability suites: crash, fault, bad input and secret hygiene, on the
//! same real control plane and simulator rig as `tests/e2e` (its
//! `support.rs` is reused). `RELIABILITY_FULL=1` runs the full sizes
//! (`make reliability`); without it the short versions run (`make test`).
//! The numbers of each run are printed as `RELIABILITY ...` lines.
//!
//! Tests run one at a time: the fault suite restarts the API server and
//! etcd, which would disturb a test running next to it.

#[path = "../e2e/support.rs"]
#[allow(dead_code)]
mod support;

mod bad_input;
mod common;
mod crash;
mod faults;
mod hygiene;

use std::{process::ExitCode, sync::Arc};

use libtest_mimic::Arguments;

use support::Env;

type TestFn = fn(Arc<Env>) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let rt = match support::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut tests: Vec<(&'static str, TestFn)> = Vec::new();
    tests.extend(crash::tests());
    tests.extend(faults::tests());
    tests.extend(bad_input::tests());
    tests.extend(hygiene::tests());
    if let Some(code) = support::list_only(&args, &tests) {
        return code;
    }
    eprintln!(
        "reliability suites, {} sizes",
        if common::full() { "full" } else { "short" }
    );
    let env = match rt.block_on(Env::start()) {
        Ok(env) => Arc::new(env),
        Err(e) => {
            let reason = format!("the test control plane could not be started: {e:#}");
            return support::fail_all(&args, &tests, &reason);
        }
    };
    let conclusion = support::run_all(&args, rt.handle(), &env, tests);
    support::stop_env(env);
    drop(rt);
    conclusion.exit_code()
}
