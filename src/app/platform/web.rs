//! The browser half of [`super`]: work between frames, one kernel thread, downloads instead
//! of files, the browser's file chooser for Q, K, V, and eframe's `WebRunner` on the page's
//! canvas `attnscope_canvas` (see `web/index.html`).
//!
//! A page has one thread for the app (wasm32-unknown-unknown has no threads). A [`Worker`]
//! therefore runs its job in slices, each after the next frame has been painted
//! (`requestAnimationFrame`, then a zero timeout), so the progress bar shows before the work
//! starts, the page stays responsive while it runs, and a newer job replaces a waiting or
//! running one exactly as on the desktop. A slice ends at the job's first checkpoint after
//! [`SLICE_BUDGET`] (`crate::app::worker`, "Sliced jobs"). The Kernels view skips a kernel whose
//! run is estimated above [`KERNEL_RUN_BUDGET_MS`] (one run is one piece of work); the
//! Scaling view starts with smaller sizes and the same budget per run.

use crate::app::dialogs::{self, Notice};
use crate::app::worker::{poll_slice, Job, Sliced};
use crate::app::{AttnApp, FilePicker, FileRequest, Shared};
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

/// Whether this build runs in a web browser.
pub const IN_BROWSER: bool = true;

/// The id of the `<canvas>` the app draws on.
pub const CANVAS_ID: &str = "attnscope_canvas";

/// The id of the element that says "loading" until the app runs.
pub const LOADING_ID: &str = "attnscope_loading";

/// The Kernels view skips a kernel whose run is estimated to take longer, in milliseconds.
/// One run of a kernel is one piece of work that holds the page; the estimate comes from the
/// dense kernel's rate, and csr ran 30 ms where 25 ms was the budget (and up to 100 ms while
/// other programs loaded the machine), so the budget keeps room for that.
pub const KERNEL_RUN_BUDGET_MS: f64 = 15.0;

/// The Scaling view skips a kernel run estimated to take longer, in milliseconds (as
/// [`KERNEL_RUN_BUDGET_MS`]).
pub const SWEEP_RUN_BUDGET_MS: f64 = 15.0;

/// The Scaling view's default largest n.
pub const SWEEP_DEFAULT_TO_N: usize = 2048;

/// Largest n of the Attention view: its n × n softmaxes took 7.7 s at n = 4096 on the page's one
/// thread in headless Chromium, and one of them (a piece of work that cannot be split) held the
/// page 206 ms at n = 512; n = 256 is 4 times less work.
pub const ATTENTION_MAX_N: usize = 256;

/// Threads the kernels may use: one (the page's).
pub fn max_threads() -> usize {
    1
}

/// Calls `work` after the next frame has been painted.
fn after_paint(work: impl FnOnce() + 'static) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let later = Closure::once_into_js(move || {
        let run = Closure::once_into_js(work);
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(run.unchecked_ref(), 0);
        }
    });
    let _ = window.request_animation_frame(later.unchecked_ref());
}

/// Runs `work` once, after the next frame (there are no threads in a browser); `name` is
/// the thread's name on the desktop.
pub fn spawn(_name: &str, work: impl FnOnce() + Send + 'static) -> Result<(), String> {
    after_paint(work);
    Ok(())
}

/// Runs the sliced job `work` once, in slices between frames; `name` is the thread's name on
/// the desktop.
pub fn spawn_sliced(
    name: &str,
    work: impl FnOnce(Job) -> Sliced<()> + Send + 'static,
) -> Result<(), String> {
    fn next(name: String, mut fut: Sliced<()>, mut tally: Tally) {
        after_paint(move || {
            if tally.slice(&name, &mut fut).is_pending() {
                next(name, fut, tally);
            }
        });
    }
    next(name.to_string(), work(Job::sliced()), Tally::new());
    Ok(())
}

/// Slices that held the page longer than this are logged to the console, in milliseconds
/// (`scripts/test-web.sh` reads them).
pub const LONG_SLICE_MS: f64 = 50.0;

/// How a sliced job has run so far: its slices, the longest one and when it started.
struct Tally {
    slices: u32,
    longest_ms: f64,
    start: web_time::Instant,
    /// The app's frame count when the job started.
    first_frame: u64,
}

/// Frames the app has painted so far.
fn frames_painted() -> u64 {
    EGUI.with(|c| c.borrow().as_ref().map_or(0, |c| c.cumulative_frame_nr()))
}

impl Tally {
    fn new() -> Self {
        Self {
            slices: 0,
            longest_ms: 0.0,
            start: web_time::Instant::now(),
            first_frame: frames_painted(),
        }
    }

    /// One slice of `fut` ([`poll_slice`] for [`SLICE_BUDGET`]). Logs a slice that held the
    /// page longer than [`LONG_SLICE_MS`], and every job done (its slices, time and longest
    /// slice: `scripts/test-web.sh` waits for these lines, so a job fast enough for one slice
    /// on a fast machine must log too).
    fn slice<R>(&mut self, name: &str, fut: &mut Sliced<R>) -> Poll<Option<R>> {
        let t0 = web_time::Instant::now();
        let out = poll_slice(fut, SLICE_BUDGET);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        self.slices += 1;
        self.longest_ms = self.longest_ms.max(ms);
        let log = |text: String| web_sys::console::log_1(&JsValue::from_str(&text));
        if ms > LONG_SLICE_MS {
            log(format!(
                "attnscope: a slice of {name} held the page {ms:.0} ms"
            ));
        }
        if matches!(out, Poll::Ready(Some(_))) {
            log(format!(
                "attnscope: {name} done in {} slice{} over {:.0} ms, the longest {:.0} ms, {} frames painted meanwhile",
                self.slices,
                if self.slices == 1 { "" } else { "s" },
                self.start.elapsed().as_secs_f64() * 1e3,
                self.longest_ms,
                frames_painted() - self.first_frame
            ));
        }
        out
    }
}

type JobFn<Req, Resp> = Box<dyn FnMut(Req, Job) -> Sliced<Resp>>;

/// Time a job may run before it pauses at its next checkpoint and lets the page paint a
/// frame (README "Run it in a browser": no task should hold the page much over 50 ms).
pub const SLICE_BUDGET: Duration = Duration::from_millis(20);

struct Inner<Req, Resp> {
    name: String,
    f: RefCell<JobFn<Req, Resp>>,
    pending: RefCell<Option<Req>>,
    /// The job started and not finished yet, paused between slices.
    running: RefCell<Option<(Sliced<Resp>, Job, Tally)>>,
    result: RefCell<Option<Resp>>,
    current: RefCell<Job>,
    busy: Cell<bool>,
    scheduled: Cell<bool>,
    repaint: Option<egui::Context>,
}

/// Runs the most recently submitted request in slices between frames (the browser's
/// counterpart of the desktop's worker thread, same interface).
pub struct Worker<Req, Resp> {
    inner: Rc<Inner<Req, Resp>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Worker<Req, Resp> {
    /// A worker for `f`, run in one slice per request (`name` is the thread's name on the
    /// desktop).
    pub fn spawn(
        name: &str,
        repaint: Option<egui::Context>,
        f: impl FnMut(Req, &Job) -> Option<Resp> + Send + 'static,
    ) -> Self {
        let f = Rc::new(RefCell::new(f));
        Self::with_job(
            name,
            repaint,
            Box::new(move |req, job| {
                let f = f.clone();
                Box::pin(async move {
                    let mut f = f.borrow_mut();
                    f(req, &job)
                })
            }),
        )
    }

    /// A worker for the sliced job `f` (README "Run it in a browser"): each slice runs until
    /// [`SLICE_BUDGET`] is spent and the job reaches a checkpoint, then the page paints a
    /// frame before the next slice.
    pub fn spawn_sliced(
        name: &str,
        repaint: Option<egui::Context>,
        f: impl FnMut(Req, Job) -> Sliced<Resp> + Send + 'static,
    ) -> Self {
        Self::with_job(name, repaint, Box::new(f))
    }

    fn with_job(name: &str, repaint: Option<egui::Context>, f: JobFn<Req, Resp>) -> Self {
        Self {
            inner: Rc::new(Inner {
                name: name.to_string(),
                f: RefCell::new(f),
                pending: RefCell::new(None),
                running: RefCell::new(None),
                result: RefCell::new(None),
                current: RefCell::new(Job::sliced()),
                busy: Cell::new(false),
                scheduled: Cell::new(false),
                repaint,
            }),
        }
    }

    /// Runs the next slice after the next frame has been painted: the progress bar shows
    /// before a job starts, and the page paints a frame between two slices. (Slices run back
    /// to back from zero timeouts instead starved the page of frames in Chromium: 0 to 3
    /// frames painted during jobs of 10 to 26 slices.)
    fn schedule(inner: &Rc<Inner<Req, Resp>>) {
        if inner.scheduled.replace(true) {
            return;
        }
        let weak = Rc::downgrade(inner);
        after_paint(move || {
            if let Some(inner) = weak.upgrade() {
                inner.scheduled.set(false);
                Self::run_slice(&inner);
            }
        });
    }

    /// One slice: drops a cancelled job, starts the pending one if none runs, and runs it
    /// for up to [`SLICE_BUDGET`].
    fn run_slice(inner: &Rc<Inner<Req, Resp>>) {
        let mut running = inner.running.borrow_mut().take();
        if running.as_ref().is_some_and(|(_, job, _)| job.cancelled()) {
            running = None;
        }
        if running.is_none() {
            if let Some(req) = inner.pending.borrow_mut().take() {
                let job = inner.current.borrow().clone();
                match inner.f.try_borrow_mut() {
                    Ok(mut f) => running = Some((f(req, job.clone()), job, Tally::new())),
                    Err(_) => {
                        // Called from inside its own job: try again after the next frame.
                        *inner.pending.borrow_mut() = Some(req);
                        Self::schedule(inner);
                        return;
                    }
                }
            }
        }
        if let Some((mut fut, job, mut tally)) = running {
            match tally.slice(&inner.name, &mut fut) {
                Poll::Ready(out) => {
                    if let Some(out) = out {
                        *inner.result.borrow_mut() = Some(out);
                    }
                }
                Poll::Pending => *inner.running.borrow_mut() = Some((fut, job, tally)),
            }
        }
        if inner.running.borrow().is_some() || inner.pending.borrow().is_some() {
            Self::schedule(inner);
        } else {
            inner.busy.set(false);
            // Done: show the result now. While a job runs its view repaints on its own
            // every 50-100 ms for the progress bar; a repaint after every slice made each
            // slice wait for a whole frame of the app (slow with a software renderer).
            if let Some(ctx) = &inner.repaint {
                ctx.request_repaint();
            }
        }
    }

    /// Queues `req`, cancelling the running job and dropping any job not started yet.
    pub fn submit(&self, req: Req) {
        {
            let mut cur = self.inner.current.borrow_mut();
            cur.cancel();
            *cur = Job::sliced();
        }
        *self.inner.pending.borrow_mut() = Some(req);
        self.inner.busy.set(true);
        Self::schedule(&self.inner);
    }

    /// Cancels the running job and drops any waiting one.
    pub fn cancel(&self) {
        *self.inner.pending.borrow_mut() = None;
        self.inner.current.borrow().cancel();
        self.inner.busy.set(false);
    }

    /// The newest finished result, if any (older ones are dropped).
    pub fn poll(&self) -> Option<Resp> {
        self.inner.result.borrow_mut().take()
    }

    /// Whether a job is running or waiting.
    pub fn busy(&self) -> bool {
        self.inner.busy.get()
    }

    /// Progress of the current job, 0 … 1.
    pub fn progress(&self) -> f32 {
        self.inner.current.borrow().progress_per_mille() as f32 / 1000.0
    }

    /// Whether jobs can run (always, in a browser).
    pub fn is_alive(&self) -> bool {
        true
    }
}

impl<Req, Resp> Drop for Worker<Req, Resp> {
    fn drop(&mut self) {
        self.inner.current.borrow().cancel();
    }
}

/// Files the browser's chooser handed over, `(name, bytes)`, waiting for the next frame.
type Picked = Rc<RefCell<Option<Result<Vec<(String, Vec<u8>)>, String>>>>;

thread_local! {
    static PICKED: Picked = Picked::default();
    /// The app's egui context, to wake it when files arrive.
    static EGUI: RefCell<Option<egui::Context>> = const { RefCell::new(None) };
}

/// Saves become downloads under the request's default name; "Load Q, K, V…" opens the
/// browser's file chooser (three `.npy` files at once) and answers `None`: the files arrive
/// a moment later and [`deliver_files`] loads them.
pub fn picker(_notice: Notice) -> FilePicker {
    Box::new(move |req| match req {
        FileRequest::OpenNpy(which) => {
            if which == "Q" {
                if let Err(e) = choose_npy_files() {
                    PICKED.with(|p| *p.borrow_mut() = Some(Err(describe(&e))));
                }
            }
            None
        }
        _ => Some(PathBuf::from(dialogs::default_name(req))),
    })
}

fn describe(e: &JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// Opens an `<input type=file multiple>` for `.npy` files and reads the chosen ones.
fn choose_npy_files() -> Result<(), JsValue> {
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let input: web_sys::HtmlInputElement = document.create_element("input")?.dyn_into()?;
    input.set_type("file");
    input.set_accept(".npy");
    input.set_multiple(true);
    let chosen = input.clone();
    let on_change = Closure::once_into_js(move || {
        wasm_bindgen_futures::spawn_local(async move {
            let read = read_files(&chosen).await.map_err(|e| describe(&e));
            PICKED.with(|p| *p.borrow_mut() = Some(read));
            EGUI.with(|c| {
                if let Some(ctx) = &*c.borrow() {
                    ctx.request_repaint();
                }
            });
        });
    });
    input.set_onchange(Some(on_change.unchecked_ref()));
    input.click();
    Ok(())
}

async fn read_files(input: &web_sys::HtmlInputElement) -> Result<Vec<(String, Vec<u8>)>, JsValue> {
    let files = input.files().ok_or("no files")?;
    let mut out = Vec::new();
    for i in 0..files.length() {
        let Some(file) = files.get(i) else { continue };
        let buffer = wasm_bindgen_futures::JsFuture::from(file.array_buffer()).await?;
        out.push((file.name(), js_sys::Uint8Array::new(&buffer).to_vec()));
    }
    Ok(out)
}

/// Q, K, V from the chosen files: by name (`q…`, `k…`, `v…`) when the names say which is
/// which, otherwise in the order the browser lists them.
fn order_qkv(mut files: Vec<(String, Vec<u8>)>) -> Result<Vec<(String, Vec<u8>)>, String> {
    if files.len() != 3 {
        return Err(format!(
            "choose three .npy files at once (Q, K and V), not {}",
            files.len()
        ));
    }
    let first = |f: &(String, Vec<u8>)| f.0.to_ascii_lowercase().chars().next();
    let mut by_name = Vec::new();
    for want in ['q', 'k', 'v'] {
        if let Some(i) = files.iter().position(|f| first(f) == Some(want)) {
            by_name.push(files.swap_remove(i));
        }
    }
    if by_name.len() == 3 {
        return Ok(by_name);
    }
    by_name.extend(files);
    Ok(by_name)
}

/// Notes that new masks reach the screen this frame, computed in `compute_ms`, `latency_ms`
/// after the settings changed: logged to the browser console (`scripts/test-web.sh` reads it).
pub fn masks_shown(compute_ms: f64, latency_ms: f64) {
    web_sys::console::log_1(&JsValue::from_str(&format!(
        "attnscope: masks on screen {latency_ms:.0} ms after the settings changed (computed in {compute_ms:.0} ms)"
    )));
}

/// Hands finished files to the user (saves become downloads) and loads Q, K, V the file
/// chooser delivered; call once per frame.
pub fn deliver_files(shared: &mut Shared) {
    for (path, bytes) in crate::export::take_written() {
        let name = path.file_name().map_or_else(
            || "attnscope.bin".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        if let Err(e) = download(&name, &bytes) {
            shared.error(format!(
                "the browser refused the download of {name}: {}",
                describe(&e)
            ));
        }
    }
    let Some(picked) = PICKED.with(|p| p.borrow_mut().take()) else {
        return;
    };
    let loaded = picked.and_then(order_qkv).and_then(|files| {
        let names: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
        let read =
            |f: &(String, Vec<u8>)| crate::inputs::read_npy(&f.1[..], f.1.len() as u64, &f.0);
        let qkv = crate::inputs::Qkv {
            q: read(&files[0]).map_err(|e| e.to_string())?,
            k: read(&files[1]).map_err(|e| e.to_string())?,
            v: read(&files[2]).map_err(|e| e.to_string())?,
        };
        qkv.validate().map_err(|e| e.to_string())?;
        Ok((qkv, names))
    });
    crate::app::controls::take_loaded(shared, loaded);
}

/// Offers `bytes` as a download called `name` (a Blob behind a clicked `<a download>`).
fn download(name: &str, bytes: &[u8]) -> Result<(), JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let document = window.document().ok_or("no document")?;
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let blob = web_sys::Blob::new_with_u8_array_sequence(&parts)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let a: web_sys::HtmlAnchorElement = document.create_element("a")?.dyn_into()?;
    a.set_href(&url);
    a.set_download(name);
    a.click();
    // The download has started reading the Blob by the time this runs.
    let revoke = Closure::once_into_js(move || {
        let _ = web_sys::Url::revoke_object_url(&url);
    });
    window.set_timeout_with_callback_and_timeout_and_arguments_0(revoke.unchecked_ref(), 60_000)?;
    Ok(())
}

/// Starts the app on the page's canvas; replaces the loading message by the app, or by
/// the reason it could not start.
pub fn run() {
    wasm_bindgen_futures::spawn_local(async {
        let document = web_sys::window().and_then(|w| w.document());
        let canvas = document
            .as_ref()
            .and_then(|d| d.get_element_by_id(CANVAS_ID))
            .and_then(|c| c.dyn_into::<web_sys::HtmlCanvasElement>().ok());
        let started = match canvas {
            None => Err(format!("the page has no <canvas id=\"{CANVAS_ID}\">")),
            Some(canvas) => eframe::WebRunner::new()
                .start(
                    canvas,
                    eframe::WebOptions::default(),
                    Box::new(|cc| {
                        EGUI.with(|c| *c.borrow_mut() = Some(cc.egui_ctx.clone()));
                        Ok(Box::new(AttnApp::new(cc, |_| {})))
                    }),
                )
                .await
                .map_err(|e| describe(&e)),
        };
        if let Some(loading) = document.and_then(|d| d.get_element_by_id(LOADING_ID)) {
            match started {
                Ok(()) => loading.remove(),
                Err(e) => loading.set_text_content(Some(&format!(
                    "attnscope could not start in this browser: {e} (it needs WebGL2)"
                ))),
            }
        }
    });
}
