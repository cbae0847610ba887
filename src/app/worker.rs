//! Background work that runs the latest job only.
//!
//! The UI thread [`Worker::submit`]s jobs; a new job cancels the one running (its
//! [`Job::cancelled`] turns true) and replaces any job still waiting, so dragging a slider
//! never queues work. Results come back through [`Worker::poll`]; the worker asks egui for a
//! repaint when one is ready. On the desktop a worker is a named thread; in a browser it runs
//! its job between frames ([`super::platform`]).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

pub use super::platform::Worker;

/// What a running job sees: its cancel flag and a progress counter.
#[derive(Clone)]
pub struct Job {
    cancel: Arc<AtomicBool>,
    progress: Arc<AtomicU32>,
}

impl Job {
    /// A job not cancelled, at progress 0.
    pub(super) fn new() -> Self {
        Self {
            cancel: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Asks the job to stop.
    pub(super) fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Progress in per mille (0 … 1000).
    pub(super) fn progress_per_mille(&self) -> u32 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Whether a newer job (or shutdown) asked this one to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The cancel flag itself (for engine functions that take `&AtomicBool`).
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    /// Reports progress in per mille (0 … 1000).
    pub fn set_progress(&self, per_mille: u32) {
        self.progress.store(per_mille.min(1000), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn wait<Req: Send + 'static, Resp: Send + 'static>(w: &Worker<Req, Resp>) -> Resp {
        for _ in 0..2000 {
            if let Some(r) = w.poll() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("worker produced nothing");
    }

    #[test]
    fn runs_jobs_and_names_its_thread() {
        let w: Worker<u32, (u32, String)> = Worker::spawn("attnscope-test", None, |x, _| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            Some((x * 2, name))
        });
        w.submit(21);
        let (v, name) = wait(&w);
        assert_eq!(v, 42);
        assert_eq!(name, "attnscope-test");
    }

    #[test]
    fn a_new_job_cancels_the_running_one() {
        let w: Worker<u32, u32> = Worker::spawn("attnscope-test", None, |x, job| {
            if x == 1 {
                while !job.cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                return None;
            }
            Some(x)
        });
        w.submit(1);
        std::thread::sleep(Duration::from_millis(20));
        w.submit(7);
        assert_eq!(wait(&w), 7);
    }
}
