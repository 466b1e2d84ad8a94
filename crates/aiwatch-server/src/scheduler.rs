//! Runs every job on its own interval with jitter, under a global concurrency limit and a
//! per-host limit, so a slow or hung target delays nobody else; measures how late each run
//! starts (schedule drift).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// One recurring job.
#[derive(Clone, Debug)]
pub struct Job {
    pub interval: Duration,
    /// Jobs on the same host share the per-host limit (politeness).
    pub host: String,
    /// When the first run is due (a restart resumes a job's schedule); `None` spreads first
    /// runs at random over the interval.
    pub first_due: Option<Duration>,
}

/// Limits of the scheduler.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Jobs running at once, across all hosts.
    pub global: usize,
    /// Jobs running at once against one host.
    pub per_host: usize,
    /// Each run is moved by up to this fraction of its interval, so runs spread out.
    pub jitter: f64,
    /// How long in-flight jobs may finish after shutdown is asked for.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            global: 256,
            per_host: 16,
            jitter: 0.05,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What the scheduler reports about each run.
pub trait Observer: Send + Sync + 'static {
    /// A run started `drift` after it was due (waiting for permits included).
    fn started(&self, job: usize, drift: Duration);
    /// A run was skipped because the previous run of the same job was still going.
    fn skipped(&self, job: usize);
}

/// Runs `jobs` until `shutdown` resolves; `run` performs job `i`. In-flight runs get
/// `limits.shutdown_grace` to finish, then are cut.
pub async fn run<F, Fut>(
    jobs: Vec<Job>,
    limits: Limits,
    observer: Arc<dyn Observer>,
    run: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let run = Arc::new(run);
    let global = Arc::new(Semaphore::new(limits.global.max(1)));
    let mut hosts: HashMap<&str, Arc<Semaphore>> = HashMap::new();
    let host_limits: Vec<Arc<Semaphore>> = jobs
        .iter()
        .map(|j| {
            hosts
                .entry(j.host.as_str())
                .or_insert_with(|| Arc::new(Semaphore::new(limits.per_host.max(1))))
                .clone()
        })
        .collect();
    let running: Vec<Arc<AtomicBool>> = jobs
        .iter()
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();

    // First runs are spread over each job's interval so a restart doesn't fire all at once.
    let start = Instant::now();
    let mut queue: BinaryHeap<Reverse<(Instant, usize)>> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let first = j
                .first_due
                .unwrap_or_else(|| j.interval.mul_f64(fastrand::f64()));
            Reverse((start + first.min(j.interval), i))
        })
        .collect();
    let mut in_flight = JoinSet::new();
    tokio::pin!(shutdown);

    while let Some(Reverse((due, _))) = queue.peek().copied() {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep_until(due) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
        }
        let now = Instant::now();
        while let Some(Reverse((due, job))) = queue.peek().copied() {
            if due > now {
                break;
            }
            queue.pop();
            let interval = jobs[job].interval;
            let offset = limits.jitter * (fastrand::f64() * 2.0 - 1.0);
            let next = if offset >= 0.0 {
                due + interval + interval.mul_f64(offset)
            } else {
                due + interval - interval.mul_f64(-offset)
            };
            // Never schedule into the past: a scheduler that fell behind catches up, not bursts.
            queue.push(Reverse((next.max(now + interval / 2), job)));

            if running[job].swap(true, Ordering::AcqRel) {
                observer.skipped(job);
                continue;
            }
            let (global, host, flag, run, observer) = (
                global.clone(),
                host_limits[job].clone(),
                running[job].clone(),
                run.clone(),
                observer.clone(),
            );
            in_flight.spawn(async move {
                let _global = global.acquire_owned().await;
                let _host = host.acquire_owned().await;
                observer.started(job, Instant::now().saturating_duration_since(due));
                run(job).await;
                flag.store(false, Ordering::Release);
            });
        }
    }

    let grace = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            () = &mut grace => {
                in_flight.abort_all();
                break;
            }
            next = in_flight.join_next() => if next.is_none() { break },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Record {
        drifts: Mutex<Vec<(usize, Duration)>>,
        skipped: AtomicUsize,
    }

    impl Observer for Record {
        fn started(&self, job: usize, drift: Duration) {
            self.drifts.lock().unwrap().push((job, drift));
        }
        fn skipped(&self, _job: usize) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_job_runs_about_once_per_interval() {
        let record = Arc::new(Record::default());
        let jobs = vec![
            Job {
                interval: Duration::from_secs(10),
                host: "a".into(),
                first_due: None,
            },
            Job {
                interval: Duration::from_secs(30),
                host: "b".into(),
                first_due: None,
            },
        ];
        run(
            jobs,
            Limits::default(),
            record.clone(),
            |_| async {},
            tokio::time::sleep(Duration::from_secs(300)),
        )
        .await;
        let drifts = record.drifts.lock().unwrap();
        let count = |j| drifts.iter().filter(|(i, _)| *i == j).count();
        assert!(
            (28..=32).contains(&count(0)),
            "10 s job ran {} times in 300 s",
            count(0)
        );
        assert!(
            (9..=11).contains(&count(1)),
            "30 s job ran {} times in 300 s",
            count(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_host_does_not_delay_other_hosts() {
        let record = Arc::new(Record::default());
        let mut jobs: Vec<Job> = (0..4)
            .map(|_| Job {
                interval: Duration::from_secs(5),
                host: "hung".into(),
                first_due: None,
            })
            .collect();
        jobs.push(Job {
            interval: Duration::from_secs(5),
            host: "fine".into(),
            first_due: None,
        });
        let limits = Limits {
            per_host: 2,
            ..Limits::default()
        };
        run(
            jobs,
            limits,
            record.clone(),
            |job| async move {
                if job < 4 {
                    std::future::pending::<()>().await;
                }
            },
            tokio::time::sleep(Duration::from_secs(60)),
        )
        .await;
        let drifts = record.drifts.lock().unwrap();
        let fine: Vec<_> = drifts.iter().filter(|(i, _)| *i == 4).collect();
        assert!(
            fine.len() >= 11,
            "the healthy host kept its schedule: {}",
            fine.len()
        );
        assert!(fine.iter().all(|(_, d)| *d < Duration::from_millis(10)));
        assert!(
            record.skipped.load(Ordering::Relaxed) > 0,
            "hung jobs are skipped, not piled up"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_in_flight_runs_after_the_grace_period() {
        let record = Arc::new(Record::default());
        let jobs = vec![Job {
            interval: Duration::from_millis(100),
            host: "a".into(),
            first_due: None,
        }];
        let limits = Limits {
            shutdown_grace: Duration::from_secs(1),
            ..Limits::default()
        };
        let started = Instant::now();
        run(
            jobs,
            limits,
            record,
            |_| std::future::pending::<()>(),
            tokio::time::sleep(Duration::from_secs(2)),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
