//! Background work that runs the latest job only.
//!
//! The UI thread [`Worker::submit`]s jobs; a new job cancels the one running (its
//! [`Job::cancelled`] turns true) and replaces any job still waiting, so dragging a slider
//! never queues work. Results come back through [`Worker::poll`]; the worker asks egui for a
//! repaint when one is ready. On the desktop a worker is a named thread; in a browser it runs
//! its job between frames ([`super::platform`]).
//!
//! **Sliced jobs.** A job that can take long is written once, for both, as a future
//! ([`Sliced`], from [`Worker::spawn_sliced`]) that awaits [`Job::checkpoint`] between pieces
//! of work and hands the engine [`Job::batch`] pieces at a time. On the desktop a job is not
//! sliced: the batch is all the pieces (they run in parallel on the cores) and a checkpoint
//! never pauses, so the future runs to its end in one go ([`run_to_end`]). In a browser the
//! job is sliced: one piece per batch, and [`poll_slice`] runs it until the slice's time
//! budget is spent, then it pauses at the next checkpoint until after the next frame. Cancel
//! and progress work the same between slices.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use web_time::Instant;

pub use super::platform::Worker;

/// A job's work as a future that pauses at [`Job::checkpoint`]s; `None` when cancelled.
pub type Sliced<Resp> = Pin<Box<dyn Future<Output = Option<Resp>>>>;

thread_local! {
    /// When the slice being polled on this thread must pause (at its next checkpoint).
    static SLICE_END: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Polls `fut` once, as one slice: it runs until it finishes or reaches a
/// [`Job::checkpoint`] after `budget` has passed.
pub fn poll_slice<R>(fut: &mut Sliced<R>, budget: Duration) -> Poll<Option<R>> {
    let previous = SLICE_END.with(|e| e.replace(Some(Instant::now() + budget)));
    let mut cx = Context::from_waker(Waker::noop());
    let out = fut.as_mut().poll(&mut cx);
    SLICE_END.with(|e| e.set(previous));
    out
}

/// Runs `fut` to its end on this thread, without pausing at checkpoints (the desktop, and
/// work that must finish within one task).
pub fn run_to_end<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        // A checkpoint pauses only inside `poll_slice`; polling again resumes it.
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// The future of [`Job::checkpoint`]: pauses once if the current slice's budget is spent.
pub struct Checkpoint {
    paused: bool,
}

impl Future for Checkpoint {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let spent = SLICE_END.with(|e| e.get().is_some_and(|end| Instant::now() >= end));
        if spent && !self.paused {
            self.paused = true;
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// What a running job sees: its cancel flag, a progress counter and whether it runs in
/// slices.
#[derive(Clone)]
pub struct Job {
    cancel: Arc<AtomicBool>,
    progress: Arc<AtomicU32>,
    sliced: bool,
}

impl Job {
    /// A job not cancelled, at progress 0, run in one go (the desktop).
    pub(super) fn new() -> Self {
        Self {
            cancel: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(AtomicU32::new(0)),
            sliced: false,
        }
    }

    /// A job not cancelled, at progress 0, run in slices between frames (a browser).
    pub fn sliced() -> Self {
        Self {
            sliced: true,
            ..Self::new()
        }
    }

    /// Whether this job runs in slices.
    pub fn is_sliced(&self) -> bool {
        self.sliced
    }

    /// How many of `remaining` independent pieces of work (raster bands, reach chunks, rows
    /// of a reference) to hand the engine at once: all of them in one go, one when sliced.
    pub fn batch(&self, remaining: usize) -> usize {
        if self.sliced {
            remaining.min(1)
        } else {
            remaining
        }
    }

    /// A point between pieces of work where a sliced job pauses when its slice's time is
    /// spent (`job.checkpoint().await`); never pauses otherwise.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { paused: false }
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

    fn wait<Req: Send + 'static, Resp: Send + 'static>(w: &Worker<Req, Resp>) -> Resp {
        for _ in 0..2000 {
            if let Some(r) = w.poll() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("worker produced nothing");
    }

    /// A job of `pieces` pieces with a checkpoint after each; answers the pieces done.
    fn counting(pieces: u32, ctl: Job) -> Sliced<u32> {
        Box::pin(async move {
            let mut done = 0;
            for _ in 0..pieces {
                if ctl.cancelled() {
                    return None;
                }
                done += 1;
                ctl.set_progress(done * 1000 / pieces);
                ctl.checkpoint().await;
            }
            Some(done)
        })
    }

    #[test]
    fn a_checkpoint_pauses_only_once_the_slice_is_spent() {
        // A budget no piece can spend: one slice runs the whole job.
        let mut fut = counting(50, Job::sliced());
        assert_eq!(
            poll_slice(&mut fut, Duration::from_secs(3600)),
            Poll::Ready(Some(50))
        );
        // A spent budget: every checkpoint pauses, so each slice runs one piece and progress
        // grows slice by slice.
        let ctl = Job::sliced();
        let mut fut = counting(5, ctl.clone());
        let mut seen = Vec::new();
        let out = loop {
            match poll_slice(&mut fut, Duration::ZERO) {
                Poll::Ready(out) => break out,
                Poll::Pending => seen.push(ctl.progress_per_mille()),
            }
        };
        assert_eq!(out, Some(5));
        assert_eq!(seen, vec![200, 400, 600, 800, 1000]);
        // Outside a slice (the desktop) checkpoints never pause.
        assert_eq!(run_to_end(counting(5, Job::new())), Some(5));
    }

    #[test]
    fn a_job_cancelled_between_slices_stops() {
        let ctl = Job::sliced();
        let mut fut = counting(100, ctl.clone());
        for _ in 0..3 {
            assert_eq!(poll_slice(&mut fut, Duration::ZERO), Poll::Pending);
        }
        ctl.cancel();
        assert_eq!(poll_slice(&mut fut, Duration::ZERO), Poll::Ready(None));
        assert_eq!(ctl.progress_per_mille(), 30);
    }

    #[test]
    fn a_sliced_worker_runs_its_jobs_and_a_new_job_replaces_the_old() {
        let w: Worker<u32, u32> = Worker::spawn_sliced("attnscope-test", None, counting);
        w.submit(7);
        assert_eq!(wait(&w), 7);
        w.submit(2_000_000_000);
        w.submit(9);
        assert_eq!(wait(&w), 9);
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
