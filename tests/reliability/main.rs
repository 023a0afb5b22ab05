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

use libtest_mimic::{Arguments, Failed, Trial};

use support::Env;

type TestFn = fn(Arc<Env>) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut tests: Vec<(&'static str, TestFn)> = Vec::new();
    tests.extend(crash::tests());
    tests.extend(faults::tests());
    tests.extend(bad_input::tests());
    tests.extend(hygiene::tests());
    let wanted = tests
        .iter()
        .any(|(name, _)| args.filter.as_deref().is_none_or(|f| name.contains(f)));
    if args.list || !wanted {
        let trials = tests
            .iter()
            .map(|(n, _)| Trial::test(*n, || Ok(())))
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }
    eprintln!(
        "reliability suites, {} sizes",
        if common::full() { "full" } else { "short" }
    );
    let env = match rt.block_on(Env::start()) {
        Ok(env) => Arc::new(env),
        Err(e) => {
            eprintln!("the test control plane could not be started: {e:#}");
            let reason = format!("control plane unavailable: {e:#}");
            let trials = tests
                .iter()
                .map(|(n, _)| {
                    let reason = reason.clone();
                    Trial::test(*n, move || Err(Failed::from(reason)))
                })
                .collect();
            return libtest_mimic::run(&args, trials).exit_code();
        }
    };
    let handle = rt.handle().clone();
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let env = env.clone();
            let handle = handle.clone();
            Trial::test(name, move || {
                handle
                    .block_on(f(env))
                    .map_err(|e| Failed::from(format!("{e:#}")))
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    match Arc::try_unwrap(env) {
        Ok(env) => {
            if let Err(e) = env.stop() {
                eprintln!("stopping the control plane: {e:#}");
            }
        }
        Err(_) => eprintln!("control plane still referenced; it is stopped when the process exits"),
    }
    drop(rt);
    conclusion.exit_code()
}
