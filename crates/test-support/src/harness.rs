//! The libtest-mimic harness of the suites that need a shared world (a
//! control plane, an installed operator) started once per test binary and
//! stopped at the end. A world that cannot start fails every test with the
//! reason; nothing is skipped.

use std::{future::Future, process::ExitCode, sync::Arc};

use futures::future::BoxFuture;
use libtest_mimic::{Arguments, Conclusion, Failed, Trial};

use crate::Env;

/// The body of a test run against a shared world `W`.
pub type TestFn<W> = fn(Arc<W>) -> BoxFuture<'static, anyhow::Result<()>>;

/// One test of a suite: its name and body.
pub type Test<W> = (&'static str, TestFn<W>);

/// What a suite's tests share; torn down once after the last test.
pub trait World: Send + Sync + Sized + 'static {
    /// Stops what the world started.
    fn teardown(self) -> impl Future<Output = anyhow::Result<()>>;
}

impl World for Env {
    async fn teardown(self) -> anyhow::Result<()> {
        self.stop()
    }
}

/// Lists a module's test functions (`async fn(Arc<W>) -> anyhow::Result<()>`)
/// as `pub fn tests() -> Vec<Test<W>>`, named after the functions:
/// `test_support::tests!(Env; registers_a_client, rotates_it);`
#[macro_export]
macro_rules! tests {
    ($world:ty; $($name:ident),* $(,)?) => {
        /// Every test of this module.
        pub fn tests() -> ::std::vec::Vec<$crate::Test<$world>> {
            ::std::vec![$((
                ::std::stringify!($name),
                (|w| $crate::__futures::FutureExt::boxed($name(w))) as $crate::TestFn<$world>,
            )),*]
        }
    };
}

/// Runs a suite: lists the tests without starting anything when nothing is
/// to run, else starts the world with `start` (`what` names it in the
/// failure), runs every test against it and tears it down.
pub fn run<W, F>(
    args: &Arguments,
    tests: Vec<Test<W>>,
    what: &str,
    start: impl FnOnce() -> F,
) -> ExitCode
where
    W: World,
    F: Future<Output = anyhow::Result<W>>,
{
    // reqwest and kube are built without a default crypto provider.
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
    if let Some(code) = list_only(args, &tests) {
        return code;
    }
    let world = match rt.block_on(start()) {
        Ok(world) => Arc::new(world),
        Err(e) => {
            let reason = format!("{what} could not be started: {e:#}");
            return fail_all(args, &tests, &reason);
        }
    };
    let conclusion = run_all(args, rt.handle(), &world, tests);
    let mut code = conclusion.exit_code();
    match Arc::try_unwrap(world) {
        Ok(world) => {
            // A world that does not stop cleanly (e.g. leaves processes or
            // mounts behind) fails the run even if every test passed.
            if let Err(e) = rt.block_on(world.teardown()) {
                eprintln!("stopping {what}: {e:#}");
                code = ExitCode::FAILURE;
            }
        }
        Err(_) => eprintln!("{what} is still referenced; it is stopped when the process exits"),
    }
    drop(rt);
    code
}

/// `Some(exit)` when nothing is to run (`--list`, or a filter matching no
/// test): the tests are listed without starting anything.
fn list_only<W>(args: &Arguments, tests: &[Test<W>]) -> Option<ExitCode> {
    let wanted = tests
        .iter()
        .any(|(name, _)| args.filter.as_deref().is_none_or(|f| name.contains(f)));
    (args.list || !wanted).then(|| {
        let trials = tests
            .iter()
            .map(|(n, _)| Trial::test(*n, || Ok(())))
            .collect();
        libtest_mimic::run(args, trials).exit_code()
    })
}

/// Every test fails with `reason`: a world that cannot start is a failure,
/// never a skip.
fn fail_all<W>(args: &Arguments, tests: &[Test<W>], reason: &str) -> ExitCode {
    eprintln!("{reason}");
    let trials = tests
        .iter()
        .map(|(n, _)| {
            let reason = reason.to_owned();
            Trial::test(*n, move || Err(Failed::from(reason)))
        })
        .collect();
    libtest_mimic::run(args, trials).exit_code()
}

/// Runs `tests` against `world` on the runtime behind `handle`.
fn run_all<W: Send + Sync + 'static>(
    args: &Arguments,
    handle: &tokio::runtime::Handle,
    world: &Arc<W>,
    tests: Vec<Test<W>>,
) -> Conclusion {
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let world = world.clone();
            let handle = handle.clone();
            Trial::test(name, move || {
                handle
                    .block_on(f(world))
                    .map_err(|e| Failed::from(format!("{e:#}")))
            })
        })
        .collect();
    libtest_mimic::run(args, trials)
}
