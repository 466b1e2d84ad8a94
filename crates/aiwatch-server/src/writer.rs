//! The store writer: one thread that batches observations into transactions and applies
//! incidents and states in the order they happened, and prunes old raw data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aiwatch_core::assess::Incident;
use aiwatch_core::observation::Observation;
use aiwatch_store::{Retention, SavedState, Store};

use crate::metrics::Metrics;

/// Observations are written at most this many per transaction…
const BATCH: usize = 2_000;
/// …and at least this often.
const LINGER: Duration = Duration::from_millis(200);
/// Queue length before senders are told the writer cannot keep up.
const QUEUE: usize = 50_000;

/// Work for the writer thread.
pub enum WriteOp {
    Observations(Vec<Observation>),
    Incident(Box<Incident>),
    States(Vec<SavedState>),
    /// Write everything pending, checkpoint, then answer.
    Flush(SyncSender<()>),
}

/// The handle the engine sends work through.
pub struct Writer {
    tx: SyncSender<WriteOp>,
    alive: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread over `store`.
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>, retention: Retention) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
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

    /// Queues work; when the queue is full the caller waits (back-pressure, nothing dropped).
    pub fn send(&self, op: WriteOp) {
        match self.tx.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(op)) => {
                tracing::warn!("store writer queue full; waiting");
                let _ = self.tx.send(op);
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("store writer has stopped; data is not being saved");
            }
        }
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Writes everything queued so far and checkpoints; returns when done (or the writer died).
    pub fn flush(&self) {
        let (done, wait) = sync_channel(1);
        if self.tx.send(WriteOp::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(30));
        }
    }

    /// Flushes and stops the thread.
    pub fn stop(&self) {
        self.flush();
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

fn write_loop(store: &dyn Store, metrics: &Metrics, rx: Receiver<WriteOp>, retention: Retention) {
    let mut pending: Vec<Observation> = Vec::with_capacity(BATCH);
    let mut oldest: Option<Instant> = None;
    let mut last_prune = Instant::now();
    let write = |batch: &mut Vec<Observation>| {
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
            }
            Err(e) => {
                tracing::error!(error = %e, count = batch.len(), "writing observations failed")
            }
        }
        batch.clear();
    };
    loop {
        let wait = oldest.map_or(LINGER, |t| LINGER.saturating_sub(t.elapsed()));
        match rx.recv_timeout(wait) {
            Ok(WriteOp::Observations(obs)) => {
                if oldest.is_none() {
                    oldest = Some(Instant::now());
                }
                pending.extend(obs);
                if pending.len() >= BATCH {
                    write(&mut pending);
                    oldest = None;
                }
            }
            Ok(WriteOp::Incident(incident)) => {
                if let Err(e) = store.upsert_incident(&incident) {
                    tracing::error!(error = %e, incident = %incident.id, "saving an incident failed");
                }
            }
            Ok(WriteOp::States(states)) => {
                if let Err(e) = store.save_states(&states) {
                    tracing::error!(error = %e, "saving states failed");
                }
            }
            Ok(WriteOp::Flush(done)) => {
                write(&mut pending);
                oldest = None;
                if let Err(e) = store.flush() {
                    tracing::error!(error = %e, "checkpoint failed");
                }
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                write(&mut pending);
                oldest = None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                write(&mut pending);
                let _ = store.flush();
                return;
            }
        }
        if last_prune.elapsed() > Duration::from_secs(3600) {
            last_prune = Instant::now();
            if let Err(e) = store.prune(&retention, chrono::Utc::now()) {
                tracing::error!(error = %e, "pruning old data failed");
            }
        }
    }
}
