//! End-to-end tests: a real kube-apiserver, etcd and kube-controller-manager
//! (built from their Go modules by `test-control-plane`), the operator binary
//! as its own process with exactly the RBAC in `deploy/rbac.yaml`, and the
//! Collibra simulator. One control plane serves the whole run; each test has
//! its own namespace, simulator and operator (`test-support`).
//!
//! The harness is libtest-mimic so the control plane is started once and
//! stopped at the end. Nothing is skipped: if the control plane cannot be
//! built or started, every test fails with the reason.

mod connections;
mod leader;
mod lifecycle;
mod packaging;
mod redirect;
mod replacement;
mod templates;
mod versions;

use std::process::ExitCode;

use test_support::{Arguments, Env};

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let mut tests = lifecycle::tests();
    tests.extend(leader::tests());
    tests.extend(connections::tests());
    tests.extend(packaging::tests());
    tests.extend(templates::tests());
    tests.extend(replacement::tests());
    tests.extend(redirect::tests());
    tests.extend(versions::tests());
    test_support::run(&args, tests, "the test control plane", || async {
        let env = Env::start(env!("CARGO_BIN_EXE_collibra-oauth-operator")).await?;
        eprintln!("control plane ready: {:?}", env.cp.timings());
        Ok(env)
    })
}
