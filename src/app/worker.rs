//! A named background thread that runs the latest job only.
//!
//! The UI thread [`Worker::submit`]s jobs; a new job cancels the one running (its
//! [`Job::cancelled`] turns true) and replaces any job still waiting, so dragging a slider
//! never queues work. Results come back through [`Worker::poll`]; the worker asks egui for a
//! repaint when one is ready.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

/// What a running job sees: its cancel flag and a progress counter.
#[derive(Clone)]
pub struct Job {
    cancel: Arc<AtomicBool>,
    progress: Arc<AtomicU32>,
}

impl Job {
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

struct Inbox<Req> {
    pending: Option<Req>,
    shutdown: bool,
}

/// A background thread running `f` on the most recently submitted request.
pub struct Worker<Req, Resp> {
    inbox: Arc<(Mutex<Inbox<Req>>, Condvar)>,
    results: mpsc::Receiver<Resp>,
    current: Arc<Mutex<Job>>,
    busy: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Worker<Req, Resp> {
    /// Spawns the thread `name`; `f` turns a request into a response (or `None` when cancelled).
    pub fn spawn(
        name: &str,
        repaint: Option<egui::Context>,
        mut f: impl FnMut(Req, &Job) -> Option<Resp> + Send + 'static,
    ) -> Self {
        let inbox = Arc::new((
            Mutex::new(Inbox {
                pending: None,
                shutdown: false,
            }),
            Condvar::new(),
        ));
        let (tx, results) = mpsc::channel();
        let current = Arc::new(Mutex::new(Job {
            cancel: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(AtomicU32::new(0)),
        }));
        let busy = Arc::new(AtomicBool::new(false));
        let (inbox2, current2, busy2) = (inbox.clone(), current.clone(), busy.clone());
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || loop {
                let req = {
                    let (lock, cv) = &*inbox2;
                    let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if guard.shutdown {
                            return;
                        }
                        if let Some(r) = guard.pending.take() {
                            break r;
                        }
                        guard = cv.wait(guard).unwrap_or_else(|e| e.into_inner());
                    }
                };
                let job = current2.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let out = f(req, &job);
                // Deliver first, then report idle: whoever sees `busy() == false` finds the
                // result in the channel. A newer job may already be pending; `busy` stays true
                // until the inbox is empty.
                if let Some(out) = out {
                    if tx.send(out).is_err() {
                        return;
                    }
                }
                {
                    let guard = inbox2.0.lock().unwrap_or_else(|e| e.into_inner());
                    if guard.pending.is_none() {
                        busy2.store(false, Ordering::Relaxed);
                    }
                }
                if let Some(ctx) = &repaint {
                    ctx.request_repaint();
                }
            })
            .ok();
        Self {
            inbox,
            results,
            current,
            busy,
            handle,
        }
    }

    /// Queues `req`, cancelling the running job and dropping any job not started yet.
    pub fn submit(&self, req: Req) {
        {
            let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
            cur.cancel.store(true, Ordering::Relaxed);
            *cur = Job {
                cancel: Arc::new(AtomicBool::new(false)),
                progress: Arc::new(AtomicU32::new(0)),
            };
        }
        let (lock, cv) = &*self.inbox;
        {
            let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            guard.pending = Some(req);
            self.busy.store(true, Ordering::Relaxed);
        }
        cv.notify_one();
    }

    /// Cancels the running job and drops any waiting one.
    pub fn cancel(&self) {
        self.inbox
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending = None;
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancel
            .store(true, Ordering::Relaxed);
        self.busy.store(false, Ordering::Relaxed);
    }

    /// The newest finished result, if any (older ones are dropped).
    pub fn poll(&self) -> Option<Resp> {
        self.results.try_iter().last()
    }

    /// Whether a job is running or waiting.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    /// Progress of the current job, 0 … 1.
    pub fn progress(&self) -> f32 {
        let cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        cur.progress.load(Ordering::Relaxed) as f32 / 1000.0
    }

    /// Whether the thread could be started.
    pub fn is_alive(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }
}

impl<Req, Resp> Drop for Worker<Req, Resp> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.inbox.0.lock() {
            g.shutdown = true;
            g.pending = None;
        }
        self.inbox.1.notify_all();
        if let Ok(cur) = self.current.lock() {
            cur.cancel.store(true, Ordering::Relaxed);
        }
        // Do not join: a long job must not freeze the window on close; it sees the cancel flag.
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
