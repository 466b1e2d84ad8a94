//! The store writer: one thread that batches observations into transactions and applies
//! incidents and states in the order they happened, and prunes old raw data. Senders wait
//! asynchronously when its queue is full (back-pressure; no worker thread is blocked, nothing
//! is dropped). A write that fails is kept and retried, up to a bounded buffer, after a pause
//! that doubles while the store keeps failing (a database restarting is not asked five times a
//! second); failures are counted, logged at most once a minute and make `/readyz` answer 503
//! (the store reports itself unhealthy).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aiwatch_alerts::Deliverer;
use aiwatch_core::alert_rules::Notification;
use aiwatch_core::assess::{Incident, Key};
use aiwatch_core::observation::Observation;
use aiwatch_store::{Retention, SavedState, Store};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Observations are written at most this many per transaction…
const BATCH: usize = 2_000;
/// …and at least this often.
const LINGER: Duration = Duration::from_millis(200);
/// Queue length before senders wait for the writer.
const QUEUE: usize = 50_000;
/// Observations kept for retry while the store fails; past it the oldest are given up (and
/// counted).
const RETRY_BUFFER: usize = 200_000;
/// A failing store is reported in the log at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// After a failed write the store is left alone this long before the next try…
const RETRY_FIRST: Duration = Duration::from_millis(200);
/// …twice as long after each further failure, up to this.
const RETRY_AT_MOST: Duration = Duration::from_secs(30);

/// Incident changes with their notifications, waiting to be saved.
type Record = (Vec<Incident>, Vec<Notification>, Option<Arc<Deliverer>>);

/// Records kept for retry while the store fails; past it the oldest are given up (and counted).
const RECORD_RETRY_BUFFER: usize = 10_000;

/// Work for the writer thread.
pub enum WriteOp {
    Observations(Vec<Observation>),
    /// Incident changes and the notifications they cause, saved in one transaction; the
    /// deliverer is woken once they are.
    Record {
        incidents: Vec<Incident>,
        notifications: Vec<Notification>,
        wake: Option<Arc<Deliverer>>,
    },
    States(Vec<SavedState>),
    /// Write everything pending, checkpoint, then answer.
    Flush(oneshot::Sender<()>),
}

/// The handle the engine sends work through.
pub struct Writer {
    tx: mpsc::Sender<WriteOp>,
    alive: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread over `store`.
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>, retention: Retention) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let thread = std::thread::Builder::new()
            .name("aiwatch-store-writer".into())
            .spawn(move || {
                write_loop(&*store, &metrics, rx, retention);
                flag.store(false, Ordering::Release);
            })
            .expect("the OS lets us start one thread");
        Self {
            tx,
            alive,
            thread: std::sync::Mutex::new(Some(thread)),
        }
    }

    /// Queues work; when the queue is full the caller awaits room (back-pressure, nothing
    /// dropped, no thread blocked).
    pub async fn send(&self, op: WriteOp) {
        if self.tx.send(op).await.is_err() {
            tracing::error!("store writer has stopped; data is not being saved");
        }
    }

    /// Work waiting for the writer right now (`aiwatch_store_queue_depth`, set at scrape).
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Writes everything queued so far and checkpoints; returns when done (or the writer died).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(WriteOp::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(30), wait).await;
        }
    }

    /// Flushes and stops the thread.
    pub async fn stop(&self) {
        self.flush().await;
        // Dropping our sender is not possible through &self; the thread ends when the engine
        // (the last holder) is dropped. Join only if it already finished.
        if let Ok(mut slot) = self.thread.lock() {
            if slot.as_ref().is_some_and(JoinHandle::is_finished) {
                if let Some(handle) = slot.take() {
                    let _ = handle.join();
                }
            }
        }
    }
}

/// A failing store: each failure is counted, said in the log at most once per
/// [`REPORT_EVERY`], and followed by a pause before the next try that doubles from
/// [`RETRY_FIRST`] to [`RETRY_AT_MOST`] while the store keeps failing.
struct Trouble {
    last_report: Option<Instant>,
    since_report: u64,
    /// The last try failed; nothing is tried before `retry_at`.
    failing: bool,
    retry_at: Instant,
    pause: Duration,
}

impl Trouble {
    fn new() -> Self {
        Self {
            last_report: None,
            since_report: 0,
            failing: false,
            retry_at: Instant::now(),
            pause: RETRY_FIRST,
        }
    }

    fn failed(&mut self, metrics: &Metrics, what: &str, error: &dyn std::fmt::Display) {
        metrics.store_write_failures.inc();
        self.since_report += 1;
        if self.last_report.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
            tracing::error!(error = %error, failures = self.since_report, "the store is failing: {what}; data is kept and retried, /readyz answers 503");
            self.last_report = Some(Instant::now());
            self.since_report = 0;
        }
        self.pause = if self.failing {
            (self.pause * 2).min(RETRY_AT_MOST)
        } else {
            RETRY_FIRST
        };
        self.failing = true;
        self.retry_at = Instant::now() + self.pause;
    }

    fn worked(&mut self) {
        self.failing = false;
    }

    /// May the store be asked now?
    fn may_try(&self) -> bool {
        !self.failing || Instant::now() >= self.retry_at
    }

    /// How long until the store may be asked again; zero when it may now.
    fn pause_left(&self) -> Duration {
        if self.failing {
            self.retry_at.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        }
    }

    /// Lets the next write try at once (a flush asked for), still doubling the pause if it
    /// fails again.
    fn try_now(&mut self) {
        self.retry_at = Instant::now();
    }
}

/// What waits for the store, each kind with its own pause: a kind the store keeps refusing (a
/// record it cannot take) neither holds back the others nor is asked again at once because
/// another kind worked.
struct Held {
    observations: Vec<Observation>,
    /// When the oldest observation waiting came: they are written at least [`LINGER`] later.
    oldest: Option<Instant>,
    observed: Trouble,
    records: VecDeque<Record>,
    recorded: Trouble,
    /// The latest state of every key that changed since the last save that worked (one per
    /// key, so bounded by the keys watched).
    states: HashMap<Key, SavedState>,
    stated: Trouble,
}

impl Held {
    fn new() -> Self {
        Self {
            observations: Vec::with_capacity(BATCH),
            oldest: None,
            observed: Trouble::new(),
            records: VecDeque::new(),
            recorded: Trouble::new(),
            states: HashMap::new(),
            stated: Trouble::new(),
        }
    }

    /// How long the writer may wait for more work: until the observations' linger is over,
    /// and, while the store is left alone, not before something waiting may be tried again.
    fn wait(&self) -> Duration {
        let linger = self
            .oldest
            .map_or(LINGER, |t| LINGER.saturating_sub(t.elapsed()));
        let soonest_retry = [
            (self.oldest.is_some(), &self.observed),
            (!self.records.is_empty(), &self.recorded),
            (!self.states.is_empty(), &self.stated),
        ]
        .into_iter()
        .filter(|(waiting, _)| *waiting)
        .map(|(_, trouble)| trouble.pause_left())
        .min();
        soonest_retry.map_or(linger, |pause| linger.max(pause))
    }

    /// Tries every kind that waits, each unless its pause is on; `now` ignores the pauses (a
    /// flush asked for).
    fn try_all(&mut self, store: &dyn Store, metrics: &Metrics, now: bool) {
        if now {
            for trouble in [&mut self.observed, &mut self.recorded, &mut self.stated] {
                trouble.try_now();
            }
        }
        self.save_records(store, metrics);
        self.save_states(store, metrics);
        self.write_observations(store, metrics);
    }

    /// Writes the observations; on failure, or while the store is left alone, keeps them
    /// (bounded: past [`RETRY_BUFFER`] the oldest are given up, and counted).
    fn write_observations(&mut self, store: &dyn Store, metrics: &Metrics) {
        let batch = &mut self.observations;
        if !batch.is_empty() && self.observed.may_try() {
            let started = Instant::now();
            match store.insert_observations(batch) {
                Ok(()) => {
                    self.observed.worked();
                    metrics
                        .store_write_seconds
                        .observe(started.elapsed().as_secs_f64());
                    metrics.stored.inc_by(batch.len() as u64);
                    batch.clear();
                }
                Err(e) => self
                    .observed
                    .failed(metrics, "writing observations failed", &e),
            }
        }
        if batch.len() > RETRY_BUFFER {
            let excess = batch.len() - RETRY_BUFFER;
            batch.drain(..excess);
            metrics.store_dropped.inc_by(excess as u64);
        }
        self.oldest = (!batch.is_empty()).then(Instant::now);
    }

    /// Saves the queued records in order; stops at the first failure and keeps the rest
    /// (bounded: past [`RECORD_RETRY_BUFFER`] the oldest are given up, and counted) for the
    /// next try, so an incident's story and its notifications are never saved out of order.
    fn save_records(&mut self, store: &dyn Store, metrics: &Metrics) {
        if self.recorded.may_try() {
            while let Some((incidents, notifications, wake)) = self.records.front() {
                match store.record(incidents, notifications) {
                    Ok(new) => {
                        self.recorded.worked();
                        if new > 0 {
                            if let Some(deliverer) = wake {
                                deliverer.wake();
                            }
                        }
                        self.records.pop_front();
                    }
                    Err(e) => {
                        self.recorded
                            .failed(metrics, "saving incidents and alerts failed", &e);
                        break;
                    }
                }
            }
        }
        while self.records.len() > RECORD_RETRY_BUFFER {
            self.records.pop_front();
            metrics.store_dropped.inc();
        }
    }

    /// Saves the states that changed; kept for the next try when it fails.
    fn save_states(&mut self, store: &dyn Store, metrics: &Metrics) {
        if self.states.is_empty() || !self.stated.may_try() {
            return;
        }
        let batch: Vec<SavedState> = self.states.values().cloned().collect();
        match store.save_states(&batch) {
            Ok(()) => {
                self.stated.worked();
                self.states.clear();
            }
            Err(e) => self.stated.failed(metrics, "saving states failed", &e),
        }
    }

    /// Counts and logs what a store that still fails at shutdown did not take.
    fn give_up(&self, metrics: &Metrics) {
        let lost = self.observations.len() + self.records.len() + self.states.len();
        if lost > 0 {
            metrics.store_dropped.inc_by(lost as u64);
            tracing::error!(
                observations = self.observations.len(),
                incident_changes = self.records.len(),
                states = self.states.len(),
                "the store still failed at shutdown; what it did not take is lost"
            );
        }
    }
}

fn write_loop(
    store: &dyn Store,
    metrics: &Metrics,
    mut rx: mpsc::Receiver<WriteOp>,
    retention: Retention,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        tracing::error!("the store writer could not start its timer; nothing will be saved");
        return;
    };
    let mut held = Held::new();
    let mut last_prune = Instant::now();
    loop {
        let wait = held.wait();
        let next = runtime.block_on(async { tokio::time::timeout(wait, rx.recv()).await });
        match next {
            Ok(Some(WriteOp::Observations(obs))) => {
                if held.oldest.is_none() {
                    held.oldest = Some(Instant::now());
                }
                held.observations.extend(obs);
                if held.observations.len() >= BATCH {
                    held.write_observations(store, metrics);
                }
            }
            Ok(Some(WriteOp::Record {
                incidents,
                notifications,
                wake,
            })) => {
                held.records.push_back((incidents, notifications, wake));
                held.save_records(store, metrics);
            }
            Ok(Some(WriteOp::States(changed))) => {
                for state in changed {
                    held.states.insert(state.key.clone(), state);
                }
                held.save_states(store, metrics);
            }
            Ok(Some(WriteOp::Flush(done))) => {
                // Asked for (shutdown, a test): tried now, whatever the pauses.
                held.try_all(store, metrics, true);
                if let Err(e) = store.flush() {
                    held.observed.failed(metrics, "checkpoint failed", &e);
                }
                let _ = done.send(());
            }
            Err(_elapsed) => held.try_all(store, metrics, false),
            Ok(None) => {
                held.try_all(store, metrics, true);
                let _ = store.flush();
                held.give_up(metrics);
                return;
            }
        }
        if last_prune.elapsed() > Duration::from_secs(3600) && held.observed.may_try() {
            last_prune = Instant::now();
            if let Err(e) = store.prune(&retention, chrono::Utc::now()) {
                held.observed.failed(metrics, "pruning old data failed", &e);
            }
        }
    }
}
