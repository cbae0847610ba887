//! File dialogs: the native ones (rfd asks xdg-desktop-portal, then zenity; in
//! [`super::platform`]), and a fallback for desktops that have neither, so that no Save or
//! Load button silently does nothing.
//!
//! Without a dialog, rfd logs an error and answers as if the user had cancelled. The app tells
//! the two apart by time: a dialog a person cancels stays open far longer than
//! [`NO_DIALOG_WITHIN`], a missing one answers at once. From then on files go to a folder
//! (the current one, or `ATTNSCOPE_SAVE_DIR`) under their default names, never over an existing
//! file, and a [`Notice`] tells the user where.

use super::{FilePicker, FileRequest};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// A message for the user about the file dialogs, shown in a window until dismissed.
pub type Notice = Rc<RefCell<Option<String>>>;

/// An empty answer faster than this means no dialog was shown.
pub const NO_DIALOG_WITHIN: Duration = Duration::from_millis(300);

/// The environment variable naming a folder to save into without asking.
pub const SAVE_DIR_VAR: &str = "ATTNSCOPE_SAVE_DIR";

/// The file name a request suggests (what the native dialog offers first).
pub fn default_name(req: FileRequest) -> String {
    match req {
        FileRequest::SaveMaskPng => "mask.png".into(),
        FileRequest::SaveMaskNpy => "mask.npy".into(),
        FileRequest::SaveScreenshot => "attnscope.png".into(),
        FileRequest::OpenNpy(which) => format!("{}.npy", which.to_lowercase()),
        FileRequest::SaveViewPng(title) => {
            format!("attnscope-{}.png", title.to_lowercase().replace(' ', "-"))
        }
        FileRequest::SaveFile(name) => name.into(),
        FileRequest::OpenModel => "model.gguf".into(),
        FileRequest::OpenText => "text.txt".into(),
    }
}

/// `dir/name`, or `dir/stem-2.ext`, `dir/stem-3.ext`, … : the first that does not exist.
pub fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) => (s, format!(".{e}")),
        None => (name, String::new()),
    };
    (2..)
        .map(|i| dir.join(format!("{stem}-{i}{ext}")))
        .find(|p| !p.exists())
        .expect("some numbered name is free")
}

/// Answers without a dialog: a save goes to a new file in `dir` named after the request; a
/// load reads `q.npy`, `k.npy`, `v.npy` from `dir` (a missing file is reported by the loader).
/// With a `notice`, every answer also says why no dialog appeared and where the file is.
pub fn folder_picker(dir: PathBuf, notice: Option<Notice>) -> FilePicker {
    Box::new(move |req| {
        let name = default_name(req);
        let (path, what) = match req {
            FileRequest::OpenNpy(which) => {
                let p = dir.join(&name);
                let what = format!("{which} is read from {}", p.display());
                (p, what)
            }
            FileRequest::OpenModel | FileRequest::OpenText => {
                let p = dir.join(&name);
                let what = format!("{} is read", p.display());
                (p, what)
            }
            _ => {
                let p = unused_path(&dir, &name);
                let what = format!("Saved as {}", p.display());
                (p, what)
            }
        };
        if let Some(n) = &notice {
            *n.borrow_mut() = Some(format!(
                "{what}.\n\nNo file dialog is available on this desktop (attnscope asks \
                 xdg-desktop-portal, then zenity; install either to choose where files go). \
                 Saves go to {} under their default names, never over an existing file, and \
                 \"Load Q, K, V…\" reads q.npy, k.npy and v.npy from there. Set {SAVE_DIR_VAR} \
                 to use another folder.",
                dir.display()
            ));
        }
        Some(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_path_never_names_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            unused_path(dir.path(), "mask.png"),
            dir.path().join("mask.png")
        );
        std::fs::write(dir.path().join("mask.png"), b"x").unwrap();
        assert_eq!(
            unused_path(dir.path(), "mask.png"),
            dir.path().join("mask-2.png")
        );
        std::fs::write(dir.path().join("mask-2.png"), b"x").unwrap();
        assert_eq!(
            unused_path(dir.path(), "mask.png"),
            dir.path().join("mask-3.png")
        );
        std::fs::write(dir.path().join("README"), b"x").unwrap();
        assert_eq!(
            unused_path(dir.path(), "README"),
            dir.path().join("README-2")
        );
    }

    #[test]
    fn folder_picker_names_files_after_the_request_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let notice = Notice::default();
        let mut pick = folder_picker(dir.path().to_path_buf(), Some(notice.clone()));
        let p = pick(FileRequest::SaveViewPng("Receptive field")).unwrap();
        assert_eq!(p, dir.path().join("attnscope-receptive-field.png"));
        let text = notice.borrow().clone().expect("a notice");
        assert!(text.contains("No file dialog"), "{text}");
        assert!(text.contains(&p.display().to_string()), "{text}");
        assert_eq!(
            pick(FileRequest::OpenNpy("K")).unwrap(),
            dir.path().join("k.npy")
        );
        assert_eq!(
            pick(FileRequest::SaveFile("sweep.csv")).unwrap(),
            dir.path().join("sweep.csv")
        );
        let mut quiet = folder_picker(dir.path().to_path_buf(), None);
        assert!(quiet(FileRequest::SaveMaskNpy).is_some());
    }
}
