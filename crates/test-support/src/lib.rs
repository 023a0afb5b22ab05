//! What the operator's test suites and its benchmark share, so each suite
//! holds only its tests.
//!
//! - [`harness`]: the libtest-mimic harness: one world per test binary
//!   (started once, torn down at the end; a world that cannot start fails
//!   every test, nothing is skipped) and the [`tests!`] list of a module.
//! - [`Env`]: a real control plane (`test-control-plane`) with the CRD and
//!   the RBAC of `deploy/rbac.yaml` installed, an admin client and a
//!   kubeconfig that impersonates the chart's ServiceAccount
//!   ([`OPERATOR_SA`]); `E2E_RBAC=namespaced` selects the chart's
//!   namespaced Roles ([`Rbac`]).
//! - [`Fixture`]: one test's namespace, Collibra simulator and operator,
//!   with waits and checks on its objects.
//! - [`Operator`]: the operator binary as its own process.
//! - [`tooling`]: helm and kstatus (built by `hack/tools/build.sh`), the
//!   Argo CD health check, the chart's rendering, `kubectl auth can-i`.
//!
//! # Adding a suite
//!
//! Add a `[[test]]` with `harness = false` to the root `Cargo.toml`
//! (integration tests of the operator package, so that
//! `CARGO_BIN_EXE_collibra-oauth-operator` names the binary under test).
//! Each module lists its tests with `test_support::tests!(Env; a, b)`, and
//! `main` runs them:
//!
//! ```no_run
//! # mod suite { use std::sync::Arc; use test_support::Env;
//! #   test_support::tests!(Env; registers); async fn registers(_: Arc<Env>) -> anyhow::Result<()> { Ok(()) } }
//! fn main() -> std::process::ExitCode {
//!     let args = test_support::Arguments::from_args();
//!     test_support::run(&args, suite::tests(), "the test control plane", || {
//!         test_support::Env::start("target/debug/collibra-oauth-operator")
//!     })
//! }
//! ```
//!
//! A suite that needs another world (such as `tests/packaging`, an operator
//! installed cluster-wide) implements [`World`] for it.

pub mod harness;
pub mod readme;
pub mod tooling;

mod env;
mod fixture;
mod operator;

use std::path::{Path, PathBuf};

pub use env::{Env, OPERATOR_SA, Rbac};
pub use fixture::{Fixture, Options, condition, manifest, ready_reason, tail, token_accepted};
pub use harness::{Test, TestFn, World, run};
pub use libtest_mimic::Arguments;
pub use operator::Operator;

// For the `tests!` macro, which expands in the suites' crates.
#[doc(hidden)]
pub use futures as __futures;

/// A path in the repository (the operator's workspace root).
pub fn repo(path: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(path)
}
