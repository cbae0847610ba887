//! What differs between the desktop app and the same app in a browser (README "Run it in a
//! browser"), in one place: how background work runs ([`Worker`], [`spawn`]), how many
//! threads the kernels may use, where saved files go and how files are picked, and the entry
//! point. Every other file of `app` is the same code on both targets.
//!
//! | | desktop (`native.rs`) | browser (`web.rs`) |
//! |---|---|---|
//! | background work | named threads | in slices between frames, on the page's thread |
//! | kernel threads | the machine's cores | 1 |
//! | saving a file | a file dialog (or a folder) | a browser download |
//! | loading Q, K, V | a file dialog | the browser's file chooser |

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
pub use web::*;

/// "1 thread", "4 threads" or, in a browser, "1 thread (web)".
pub fn threads_label(threads: usize) -> String {
    let plural = if threads == 1 { "" } else { "s" };
    let web = if IN_BROWSER { " (web)" } else { "" };
    format!("{threads} thread{plural}{web}")
}
