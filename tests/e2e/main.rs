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
mod versions;

use std::{process::ExitCode, sync::Arc};

use libtest_mimic::Arguments;

use support::Env;

type TestFn = fn(Arc<Env>) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let rt = match support::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut tests: Vec<(&'static str, TestFn)> = lifecycle::tests();
    tests.extend(leader::tests());
    tests.extend(packaging::tests());
    tests.extend(versions::tests());
    if let Some(code) = support::list_only(&args, &tests) {
        return code;
    }
    let env = match rt.block_on(Env::start()) {
        Ok(env) => Arc::new(env),
        Err(e) => {
            let reason = format!("the test control plane could not be started: {e:#}");
            return support::fail_all(&args, &tests, &reason);
        }
    };
    eprintln!("control plane ready: {:?}", env.cp.timings());
    let conclusion = support::run_all(&args, rt.handle(), &env, tests);
    support::stop_env(env);
    drop(rt);
    conclusion.exit_code()
}
