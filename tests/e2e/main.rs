//! End-to-end tests: a real kube-apiserver, etcd and kube-controller-manager
//! (built from their Go modules by `test-control-plane`), the operator binary
//! as its own process with exactly the RBAC in `deploy/rbac.yaml`, and the
//! Collibra simulator. One control plane serves the whole run; each test has
//! its own namespace, simulator and operator.
//!
//! The harness is libtest-mimic so the control plane is started once and
//! stopped at the end. Nothing is skipped: if the control plane cannot be
//! built or started, every test fails with the reason.

mod leader;
mod lifecycle;
mod packaging;
// Shared with tests/reliability and tests/packaging, which use more of it.
#[allow(dead_code)]
mod support;
mod tooling;

use std::{process::ExitCode, sync::Arc};

use libtest_mimic::{Arguments, Failed, Trial};

use support::Env;

type TestFn = fn(Arc<Env>) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;

fn main() -> ExitCode {
    let args = Arguments::from_args();
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
    let mut tests: Vec<(&'static str, TestFn)> = lifecycle::tests();
    tests.extend(leader::tests());
    tests.extend(packaging::tests());
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

    let env = match rt.block_on(Env::start()) {
        Ok(env) => Arc::new(env),
        Err(e) => {
            eprintln!("the test control plane could not be started: {e:#}");
            // Report every test as failed, never skipped.
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
    eprintln!("control plane ready: {:?}", env.cp.timings());
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
