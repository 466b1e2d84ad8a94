//! The store writer: one thread that batches observations into transactions and applies
//! incidents and states in the order they happened, and prunes old raw data. Senders wait
//! asynchronously when its queue is full (back-pressure; no worker thread is blocked, nothing
//! is dropped). A write that fails is kept and retried, up to a bounded buffer; failures are
//! counted, logged at most once a minute and make `/readyz` answer 503 (the store reports
//! itself unhealthy).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aiwatch_alerts::Deliverer;
use aiwatch_core::alert_rules::Notification;
use aiwatch_core::assess::Incident;
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

/// Incident changes with their notifications, waiting to be saved.
type Record = (Vec<Incident>, Vec<Notification>, Option<Arc<Deliverer>>);

/// Records kept for retry while the store fails; past it the oldest are given up (and counted).
const RECORD_RETRY_BUFFER: usize = 10_000;

/// Saves the queued records in order; stops at the first failure and keeps the rest (bounded)
/// for the next try, so an incident's story and its notifications are never saved out of order.
fn save_records(
    store: &dyn Store,
    metrics: &Metrics,
    records: &mut VecDeque<Record>,
    report: &mut FailureReport,
) {
    while let Some((incidents, notifications, wake)) = records.front() {
        match store.record(incidents, notifications) {
            Ok(new) => {
                if new > 0 {
                    if let Some(deliverer) = wake {
                        deliverer.wake();
                    }
                }
                records.pop_front();
            }
            Err(e) => {
                report.failed(metrics, "saving incidents and alerts failed", &e);
                while records.len() > RECORD_RETRY_BUFFER {
                    records.pop_front();
                    metrics.store_dropped.inc();
                }
                return;
            }
        }
    }
}

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

/// Counts store failures and says so in the log at most once per [`REPORT_EVERY`].
struct FailureReport {
    last: Option<Instant>,
    since: u64,
}

impl FailureReport {
    fn failed(&mut self, metrics: &Metrics, what: &str, error: &dyn std::fmt::Display) {
        metrics.store_write_failures.inc();
        self.since += 1;
        if self.last.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
            tracing::error!(error = %error, failures = self.since, "the store is failing: {what}; data is kept and retried, /readyz answers 503");
            self.last = Some(Instant::now());
            self.since = 0;
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
    let mut pending: Vec<Observation> = Vec::with_capacity(BATCH);
    let mut records: VecDeque<Record> = VecDeque::new();
    let mut oldest: Option<Instant> = None;
    let mut last_prune = Instant::now();
    let mut report = FailureReport {
        last: None,
        since: 0,
    };
    // Writes `pending`; on failure keeps it (bounded) for the next attempt.
    let write = |batch: &mut Vec<Observation>, report: &mut FailureReport| {
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        match store.insert_observations(batch) {
            Ok(()) => {
                metrics
                    .store_write_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics.stored.inc_by(batch.len() as u64);
                batch.clear();
            }
            Err(e) => {
                report.failed(metrics, "writing observations failed", &e);
                if batch.len() > RETRY_BUFFER {
                    let excess = batch.len() - RETRY_BUFFER;
                    batch.drain(..excess);
                    metrics.store_dropped.inc_by(excess as u64);
                }
            }
        }
    };
    loop {
        let wait = oldest.map_or(LINGER, |t| LINGER.saturating_sub(t.elapsed()));
        let next = runtime.block_on(async { tokio::time::timeout(wait, rx.recv()).await });
        match next {
            Ok(Some(WriteOp::Observations(obs))) => {
                if oldest.is_none() {
                    oldest = Some(Instant::now());
                }
                pending.extend(obs);
                if pending.len() >= BATCH {
                    write(&mut pending, &mut report);
                    oldest = (!pending.is_empty()).then(Instant::now);
                }
            }
            Ok(Some(WriteOp::Record {
                incidents,
                notifications,
                wake,
            })) => {
                records.push_back((incidents, notifications, wake));
                save_records(store, metrics, &mut records, &mut report);
            }
            Ok(Some(WriteOp::States(states))) => {
                if let Err(e) = store.save_states(&states) {
                    report.failed(metrics, "saving states failed", &e);
                }
            }
            Ok(Some(WriteOp::Flush(done))) => {
                save_records(store, metrics, &mut records, &mut report);
                write(&mut pending, &mut report);
                oldest = (!pending.is_empty()).then(Instant::now);
                if let Err(e) = store.flush() {
                    report.failed(metrics, "checkpoint failed", &e);
                }
                let _ = done.send(());
            }
            Err(_elapsed) => {
                save_records(store, metrics, &mut records, &mut report);
                write(&mut pending, &mut report);
                oldest = (!pending.is_empty()).then(Instant::now);
            }
            Ok(None) => {
                save_records(store, metrics, &mut records, &mut report);
                write(&mut pending, &mut report);
                let _ = store.flush();
                return;
            }
        }
        if last_prune.elapsed() > Duration::from_secs(3600) {
            last_prune = Instant::now();
            if let Err(e) = store.prune(&retention, chrono::Utc::now()) {
                report.failed(metrics, "pruning old data failed", &e);
            }
        }
    }
}
