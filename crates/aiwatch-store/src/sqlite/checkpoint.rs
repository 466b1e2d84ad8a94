//! The background checkpointer: copies the WAL into the main database file on its own thread
//! and connection, so the writer never waits on the fsyncs a checkpoint needs.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{Error, Result};

/// How often the checkpointer runs when nobody asks it to.
const IDLE_INTERVAL: Duration = Duration::from_secs(5);

enum Message {
    /// A transaction committed: there is WAL to copy.
    Kick,
    Stop,
}

/// Handle to the checkpointer thread; dropping it stops the thread.
pub(crate) struct Checkpointer {
    tx: SyncSender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path, busy_timeout: Duration) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        // The WAL's frames are fsynced before they are copied and the file after: what
        // `synchronous=NORMAL` promises for checkpoints.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let (tx, rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("aiwatch-store-checkpoint".into())
            .spawn(move || run(conn, rx))
            .map_err(Error::Thread)?;
        Ok(Self {
            tx,
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint soon; never blocks (a pending request already covers this one).
    pub(crate) fn kick(&self) {
        match self.tx.try_send(Message::Kick) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.tx.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: Connection, rx: Receiver<Message>) {
    loop {
        match rx.recv_timeout(IDLE_INTERVAL) {
            Ok(Message::Kick) | Err(RecvTimeoutError::Timeout) => {
                // PASSIVE never blocks the writer or readers; what it cannot copy now (frames
                // newer than a reader's snapshot) is copied next time. Errors (a full disk) show
                // up on the writer's own commits, so they are not reported twice here.
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
