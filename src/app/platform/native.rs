//! The desktop half of [`super`]: worker threads, the machine's cores, native file dialogs
//! and `eframe::run_native`.

use crate::app::dialogs::{self, Notice};
use crate::app::worker::{run_to_end, Job, Sliced};
use crate::app::{AttnApp, FilePicker, FileRequest, Settings};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

/// Whether this build runs in a web browser.
pub const IN_BROWSER: bool = false;

/// The Kernels view skips a kernel whose run is estimated to take longer, in milliseconds.
pub const KERNEL_RUN_BUDGET_MS: f64 = 1500.0;

/// The Scaling view skips a kernel run estimated to take longer, in milliseconds.
pub const SWEEP_RUN_BUDGET_MS: f64 = 4000.0;

/// The Scaling view's default largest n.
pub const SWEEP_DEFAULT_TO_N: usize = 8192;

/// Largest n of the Attention view (the kernel's own limit for the n × n weights).
pub const ATTENTION_MAX_N: usize = crate::kernel::MAX_WEIGHTS_N;

/// Threads the kernels may use: the machine's available parallelism (1 if unknown).
pub fn max_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `work` once in the background on a thread called `name`; `Err` says why it could
/// not start.
pub fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(work)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Runs the sliced job `work` once in the background on a thread called `name`, to its end
/// in one go; `Err` says why it could not start.
pub fn spawn_sliced(
    name: &str,
    work: impl FnOnce(Job) -> Sliced<()> + Send + 'static,
) -> Result<(), String> {
    spawn(name, move || run_to_end(work(Job::new())).unwrap_or(()))
}

/// Asks rfd for a path, with the request's filter and default name.
fn rfd_dialog(req: FileRequest) -> Option<PathBuf> {
    let d = rfd::FileDialog::new();
    let name = dialogs::default_name(req);
    match req {
        FileRequest::OpenNpy(which) => d
            .add_filter("NumPy array", &["npy"])
            .set_title(format!("Load {which} (.npy, shape (n, d))"))
            .pick_file(),
        FileRequest::OpenModel => d
            .add_filter(
                "Model (GGUF, or a BERT folder's config.json)",
                &["gguf", "json", "safetensors"],
            )
            .set_title("Open a model")
            .pick_file(),
        FileRequest::OpenText => d
            .add_filter("Text", &["txt", "md"])
            .set_title("Open a text to run the model on")
            .pick_file(),
        FileRequest::SaveMaskNpy => d
            .add_filter("NumPy array", &["npy"])
            .set_file_name(name)
            .save_file(),
        FileRequest::SaveFile(n) => {
            let ext = n.rsplit('.').next().unwrap_or("");
            d.add_filter(ext.to_uppercase(), &[ext])
                .set_file_name(name)
                .save_file()
        }
        _ => d
            .add_filter("PNG image", &["png"])
            .set_file_name(name)
            .save_file(),
    }
}

/// Whether a `zenity` program is on `PATH` (rfd's fallback when no portal answers).
fn zenity_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("zenity").is_file()))
}

/// The app's file dialogs: native ones, or straight to `ATTNSCOPE_SAVE_DIR` when it is set,
/// or to the current folder (with a `notice`) once it is clear that no dialog can appear.
pub fn picker(notice: Notice) -> FilePicker {
    let cwd = || std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if let Some(dir) = std::env::var_os(dialogs::SAVE_DIR_VAR).filter(|d| !d.is_empty()) {
        return dialogs::folder_picker(PathBuf::from(dir), None);
    }
    let mut fallback = dialogs::folder_picker(cwd(), Some(notice));
    let mut no_dialog = false;
    Box::new(move |req| {
        if !no_dialog {
            let t0 = std::time::Instant::now();
            let got = rfd_dialog(req);
            if got.is_some() || t0.elapsed() >= dialogs::NO_DIALOG_WITHIN || zenity_on_path() {
                return got;
            }
            no_dialog = true;
        }
        fallback(req)
    })
}

/// Notes that new masks reach the screen this frame, computed in `compute_ms`, `latency_ms`
/// after the settings changed (the browser logs it; the status bar shows the compute time).
pub fn masks_shown(_compute_ms: f64, _latency_ms: f64) {}

/// Hands finished files to the user; on the desktop they are already on disk.
pub fn deliver_files(_shared: &mut crate::app::Shared) {}

/// Opens the window and runs the app until it is closed; `apply` edits the saved settings
/// first (the command line's pattern flags, turned into settings by the binary).
pub fn run(apply: impl FnOnce(&mut Settings) + 'static) -> Result<(), String> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("attnscope")
            .with_inner_size([1500.0, 940.0])
            .with_min_inner_size([900.0, 600.0]),
        ..Default::default()
    };
    eframe::run_native(
        "attnscope",
        options,
        Box::new(move |cc| Ok(Box::new(AttnApp::new(cc, apply)))),
    )
    .map_err(|e| {
        format!(
            "could not open the window: {}",
            without_source_paths(&e.to_string())
        )
    })
}

/// `text` without the source locations some dependencies put in their messages
/// (`os error at /root/.cargo/…/linux/mod.rs:765: neither …` → `os error: neither …`).
fn without_source_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" at ") {
        let after = &rest[at + 4..];
        // A location is one word holding `.rs:` and ending in `:` before the message goes on.
        match after.find(": ") {
            Some(end) if after[..end].contains(".rs:") && !after[..end].contains(' ') => {
                out.push_str(&rest[..at]);
                rest = &after[end..];
            }
            _ => {
                out.push_str(&rest[..at + 4]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
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
        let current = Arc::new(Mutex::new(Job::new()));
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

    /// Spawns the thread `name` for the sliced job `f`: on the desktop it runs each job to
    /// its end in one go (its checkpoints never pause).
    pub fn spawn_sliced(
        name: &str,
        repaint: Option<egui::Context>,
        mut f: impl FnMut(Req, Job) -> Sliced<Resp> + Send + 'static,
    ) -> Self {
        Self::spawn(name, repaint, move |req, job| {
            run_to_end(f(req, job.clone()))
        })
    }

    /// Queues `req`, cancelling the running job and dropping any job not started yet.
    pub fn submit(&self, req: Req) {
        {
            let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
            cur.cancel();
            *cur = Job::new();
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
            .cancel();
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
        cur.progress_per_mille() as f32 / 1000.0
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
            cur.cancel();
        }
        // Do not join: a long job must not freeze the window on close; it sees the cancel flag.
    }
}

#[cfg(test)]
mod start_up_tests {
    #[test]
    fn start_up_errors_drop_dependency_source_paths() {
        let winit = "winit EventLoopError: os error at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/winit-0.30.13/src/platform_impl/linux/mod.rs:765: neither WAYLAND_DISPLAY nor WAYLAND_SOCKET nor DISPLAY is set.";
        assert_eq!(
            super::without_source_paths(winit),
            "winit EventLoopError: os error: neither WAYLAND_DISPLAY nor WAYLAND_SOCKET nor DISPLAY is set."
        );
        let plain = "no adapter at all: look at the driver";
        assert_eq!(super::without_source_paths(plain), plain);
    }
}
