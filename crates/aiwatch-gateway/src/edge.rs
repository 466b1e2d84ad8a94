//! Which edge thread the code runs on, so what every request updates (idle connections, usage
//! counts, latency histograms, counters) is kept once per thread and touched by one core: no
//! lock taken, no cache line passed between cores per request.
//!
//! The gateway serves clients from one single-threaded runtime per core; each marks its thread
//! with [`enter_edge_thread`]. Any other thread (the canaries', `serve`'s runtime) counts as
//! edge thread 0, so per-thread state stays shareable: it is atomics or locks, just uncontended.

use std::cell::Cell;

/// At most this many edge threads get state of their own; more share it.
const MAX_EDGE_THREADS: usize = 64;

thread_local! {
    /// The edge thread this thread is; 0 for any other.
    static EDGE_THREAD: Cell<usize> = const { Cell::new(0) };
}

/// How many edge threads get state of their own: one per core.
pub fn edge_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_EDGE_THREADS)
}

/// Marks the current thread as the gateway's edge thread `index` (each serving clients on its
/// own single-threaded runtime): its requests use connections and counts of their own.
pub fn enter_edge_thread(index: usize) {
    EDGE_THREAD.with(|t| t.set(index));
}

/// One `T` per edge thread, each on cache lines of its own.
pub struct PerEdge<T> {
    slots: Box<[Padded<T>]>,
}

/// Two 64-byte lines: x86's adjacent-line prefetch pairs them.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> PerEdge<T> {
    /// One `make()` for each of [`edge_threads`].
    pub fn new(mut make: impl FnMut() -> T) -> Self {
        Self {
            slots: (0..edge_threads()).map(|_| Padded(make())).collect(),
        }
    }

    /// The current thread's own.
    pub fn local(&self) -> &T {
        let index = EDGE_THREAD.with(Cell::get);
        // Never empty: one per edge thread, at least one.
        &self.slots[index % self.slots.len()].0
    }

    /// Every thread's, to sum when read.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|slot| &slot.0)
    }
}

impl<T> std::fmt::Debug for PerEdge<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerEdge")
            .field("threads", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// Runs `work` once on each of [`edge_threads`] scoped threads, each entered as its edge thread.
#[cfg(test)]
pub(crate) fn on_every_edge_thread(work: impl Fn() + Sync) {
    std::thread::scope(|scope| {
        for index in 0..edge_threads() {
            let work = &work;
            scope.spawn(move || {
                enter_edge_thread(index);
                work();
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn each_edge_thread_counts_in_its_own_slot_and_the_sum_sees_them_all() {
        let counts = PerEdge::new(|| AtomicU64::new(0));
        let threads = edge_threads();
        on_every_edge_thread(|| {
            for _ in 0..1_000 {
                counts.local().fetch_add(1, Ordering::Relaxed);
            }
        });
        let slots: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(slots, vec![1_000; threads]);
        // A thread that is no edge thread shares the first slot.
        counts.local().fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            counts.iter().next().map(|c| c.load(Ordering::Relaxed)),
            Some(1_001)
        );
    }
}
