//! Runs reconciles: a queue of object keys, each due at a time, at most
//! `concurrency` reconciles at once and never two of one object.
//!
//! This replaces kube-runtime's `Controller` for OAuthClients. Its
//! scheduler keeps, per waiting object, two copies of a request holding the
//! object's reference with four strings, in a hash map and a timer wheel:
//! about 0.9 KiB per object while 10,000 wait at a start or a rollout. Here
//! a waiting object is its namespace and name, its due time, and one entry
//! in an ordered set (docs/design.md, "Memory"). The rules are those of
//! kube-runtime's runner:
//!
//! - a key asked for several times waits once, at the earliest time asked;
//! - a key asked for while its reconcile runs waits until it ends, then
//!   runs again;
//! - a reconcile's [`Action`] asks for the next run; so does the error
//!   policy's for a failed one;
//! - nothing runs before the objects' cache has listed once;
//! - on shutdown, no new reconcile starts and those running finish.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt,
    future::Future,
    time::Duration,
};

use futures::{StreamExt, stream::FuturesUnordered};
use tokio::{sync::mpsc, time::Instant};

/// When an object whose reconcile panicked is tried again.
const AFTER_PANIC: Duration = Duration::from_secs(60);

/// An object: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The namespace.
    pub namespace: Box<str>,
    /// The name.
    pub name: Box<str>,
}

impl Key {
    /// The key of `namespace/name`.
    pub fn new(namespace: &str, name: &str) -> Key {
        Key {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Run again after `duration`, unless something asks sooner.
    pub const fn requeue(duration: Duration) -> Action {
        Action {
            requeue_after: Some(duration),
        }
    }

    /// Run again only when something asks.
    pub const fn await_change() -> Action {
        Action {
            requeue_after: None,
        }
    }

    /// When to run again, if asked.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// The waiting keys.
#[derive(Default)]
struct Queue {
    /// When each waiting key is due.
    due: HashMap<Key, Instant>,
    /// The same, in order of time.
    order: BTreeSet<(Instant, Key)>,
    /// Keys whose reconcile runs.
    running: HashSet<Key>,
}

impl Queue {
    /// Asks for `key` at `at`; the earliest time asked wins.
    fn ask(&mut self, key: Key, at: Instant) {
        match self.due.get(&key) {
            Some(&current) if current <= at => {}
            Some(&current) => {
                self.order.remove(&(current, key.clone()));
                self.order.insert((at, key.clone()));
                self.due.insert(key, at);
            }
            None => {
                self.order.insert((at, key.clone()));
                self.due.insert(key, at);
            }
        }
    }

    /// The next key due by `now` whose reconcile does not run; taken out.
    fn take_due(&mut self, now: Instant) -> Option<Key> {
        let found = self
            .order
            .iter()
            .take_while(|(at, _)| *at <= now)
            .find(|(_, k)| !self.running.contains(k))
            .cloned()?;
        self.order.remove(&found);
        self.due.remove(&found.1);
        Some(found.1)
    }

    /// The earliest time a key not running is due.
    fn next_due(&self) -> Option<Instant> {
        self.order
            .iter()
            .find(|(_, k)| !self.running.contains(k))
            .map(|(at, _)| *at)
    }

    /// How many keys wait.
    fn len(&self) -> usize {
        self.due.len()
    }
}

/// Asks the runner for reconciles. Cheap to clone.
#[derive(Clone)]
pub struct Asker {
    tx: mpsc::UnboundedSender<(Key, Instant)>,
}

impl Asker {
    /// Asks for a reconcile of `key` now.
    pub fn now(&self, key: Key) {
        let _ = self.tx.send((key, Instant::now()));
    }
}

/// The runner's queue and the way to ask it for reconciles.
pub fn queue() -> (Asker, Asked) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Asker { tx }, Asked { rx })
}

/// The receiving end of [`queue`], consumed by [`run`].
pub struct Asked {
    rx: mpsc::UnboundedReceiver<(Key, Instant)>,
}

/// Runs reconciles until `stop` completes, then lets those running finish.
///
/// `reconcile` runs a key's reconcile and returns what it asks for next;
/// `None` when the key's object is not there any more. `ready` says
/// whether reconciles may start (the objects' cache has listed once); it is
/// checked whenever something wakes the runner.
pub async fn run<R, F>(
    mut asked: Asked,
    concurrency: usize,
    ready: impl Fn() -> bool,
    reconcile: R,
    stop: impl Future<Output = ()>,
) where
    R: Fn(Key) -> F,
    F: Future<Output = Option<Action>> + Send + 'static,
{
    let limit = if concurrency == 0 {
        usize::MAX
    } else {
        concurrency
    };
    let mut queue = Queue::default();
    let mut running = FuturesUnordered::new();
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    // Checked until it holds; a runner that is not ready yet looks again
    // every 50 ms (the cache has no way to wake it).
    let mut is_ready = false;
    loop {
        if !is_ready {
            is_ready = ready();
        }
        let now = Instant::now();
        while is_ready && !stopping && queue.running.len() < limit {
            let Some(key) = queue.take_due(now) else {
                break;
            };
            queue.running.insert(key.clone());
            let task = tokio::spawn(reconcile(key.clone()));
            running.push(async move { (key, task.await) });
        }
        if stopping && running.is_empty() {
            return;
        }
        let next = if !is_ready {
            Some(now + Duration::from_millis(50))
        } else if queue.running.len() < limit {
            queue.next_due()
        } else {
            None
        };
        tokio::select! {
            asked_for = asked.rx.recv(), if !stopping => match asked_for {
                Some((key, at)) => {
                    queue.ask(key, at);
                    // Everything asked meanwhile, before anything starts.
                    while let Ok((key, at)) = asked.rx.try_recv() {
                        queue.ask(key, at);
                    }
                }
                None => stopping = true,
            },
            Some((key, done)) = running.next(), if !running.is_empty() => {
                queue.running.remove(&key);
                match done {
                    Ok(Some(action)) => {
                        if let Some(after) = action.requeue_after() {
                            queue.ask(key, Instant::now() + after);
                        }
                    }
                    Ok(None) => {}
                    // A reconcile that panicked: the object is tried again
                    // later rather than forgotten.
                    Err(e) => {
                        tracing::error!(object = %key, error = %e, retry_in = ?AFTER_PANIC, "a reconcile task failed");
                        queue.ask(key, Instant::now() + AFTER_PANIC);
                    }
                }
            }
            () = sleep_until(next), if next.is_some() && !stopping => {}
            () = &mut stop, if !stopping => {
                tracing::debug!(waiting = queue.len(), running = running.len(), "runner stopping");
                stopping = true;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn key(n: &str) -> Key {
        Key::new("ns", n)
    }

    #[test]
    fn a_key_waits_once_at_the_earliest_time_asked() {
        let mut q = Queue::default();
        let t = Instant::now();
        q.ask(key("a"), t + Duration::from_secs(10));
        q.ask(key("a"), t + Duration::from_secs(5));
        q.ask(key("a"), t + Duration::from_secs(20));
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_due(), Some(t + Duration::from_secs(5)));
        assert_eq!(q.take_due(t + Duration::from_secs(4)), None);
        assert_eq!(q.take_due(t + Duration::from_secs(5)), Some(key("a")));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_running_key_is_not_taken_but_others_are() {
        let mut q = Queue::default();
        let t = Instant::now();
        q.ask(key("a"), t);
        q.ask(key("b"), t + Duration::from_millis(1));
        q.running.insert(key("a"));
        assert_eq!(q.next_due(), Some(t + Duration::from_millis(1)));
        assert_eq!(q.take_due(t + Duration::from_secs(1)), Some(key("b")));
        assert_eq!(q.take_due(t + Duration::from_secs(1)), None);
        q.running.remove(&key("a"));
        assert_eq!(q.take_due(t + Duration::from_secs(1)), Some(key("a")));
    }

    /// Runs `run` with a reconcile that records its keys and sleeps `work`.
    async fn harness(
        concurrency: usize,
        work: Duration,
        action: Action,
    ) -> (
        Asker,
        Arc<Mutex<Vec<(String, Instant)>>>,
        Arc<Mutex<usize>>,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let (asker, asked) = queue();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let peak = Arc::new(Mutex::new(0usize));
        let now_running = Arc::new(Mutex::new(0usize));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn({
            let seen = seen.clone();
            let peak = peak.clone();
            run(
                asked,
                concurrency,
                || true,
                move |k: Key| {
                    let seen = seen.clone();
                    let peak = peak.clone();
                    let now_running = now_running.clone();
                    async move {
                        {
                            let mut r = now_running.lock().expect("lock");
                            *r += 1;
                            let mut p = peak.lock().expect("lock");
                            *p = (*p).max(*r);
                        }
                        seen.lock()
                            .expect("lock")
                            .push((k.to_string(), Instant::now()));
                        tokio::time::sleep(work).await;
                        *now_running.lock().expect("lock") -= 1;
                        Some(action)
                    }
                },
                async move {
                    let _ = stop_rx.await;
                },
            )
        });
        (asker, seen, peak, stop_tx, handle)
    }

    #[tokio::test(start_paused = true)]
    async fn runs_at_most_the_limit_at_once_and_each_key_once() {
        let (asker, seen, peak, stop, handle) =
            harness(2, Duration::from_millis(100), Action::await_change()).await;
        for n in ["a", "b", "c", "d", "a", "b"] {
            asker.now(key(n));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut names: Vec<String> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        names.sort();
        assert_eq!(names, ["ns/a", "ns/b", "ns/c", "ns/d"]);
        assert_eq!(*peak.lock().expect("lock"), 2);
        let _ = stop.send(());
        handle.await.expect("runner");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_asked_for_while_running_runs_again_after() {
        let (asker, seen, peak, stop, handle) =
            harness(4, Duration::from_millis(100), Action::await_change()).await;
        asker.now(key("a"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        asker.now(key("a"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 2, "ran twice");
        assert!(
            seen[1].1 - seen[0].1 >= Duration::from_millis(100),
            "not side by side"
        );
        assert_eq!(*peak.lock().expect("lock"), 1);
        let _ = stop.send(());
        handle.await.expect("runner");
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_runs_the_key_again_after_its_delay() {
        let (asker, seen, _, stop, handle) = harness(
            4,
            Duration::from_millis(1),
            Action::requeue(Duration::from_secs(10)),
        )
        .await;
        let start = Instant::now();
        asker.now(key("a"));
        tokio::time::sleep(Duration::from_secs(25)).await;
        let at: Vec<Duration> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, t)| *t - start)
            .collect();
        assert_eq!(at.len(), 3, "{at:?}");
        assert!(
            at[1] >= Duration::from_secs(10) && at[1] < Duration::from_secs(11),
            "{at:?}"
        );
        let _ = stop.send(());
        handle.await.expect("runner");
    }

    #[tokio::test(start_paused = true)]
    async fn on_stop_nothing_new_starts_and_running_ones_finish() {
        let (asker, seen, _, stop, handle) =
            harness(1, Duration::from_secs(1), Action::await_change()).await;
        asker.now(key("a"));
        asker.now(key("b"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = stop.send(());
        handle.await.expect("runner ends once `a` finished");
        let names: Vec<String> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(names, ["ns/a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_runs_before_ready() {
        let (asker, asked) = queue();
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn({
            let ready = ready.clone();
            let ran = ran.clone();
            run(
                asked,
                4,
                move || ready.load(std::sync::atomic::Ordering::SeqCst),
                move |_k| {
                    let ran = ran.clone();
                    async move {
                        ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Some(Action::await_change())
                    }
                },
                async move {
                    let _ = stop_rx.await;
                },
            )
        });
        asker.now(key("a"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 0);
        ready.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 1);
        let _ = stop_tx.send(());
        handle.await.expect("runner");
    }
}
