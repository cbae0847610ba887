//! Large buffers reserved fallibly: a request the system refuses (an address-space limit such as
//! `ulimit -v`, or simply too little memory) becomes an [`OutOfMemory`] error, one `error:` line
//! at the command line (exit 1), instead of an abort.

/// A buffer could not be reserved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "could not reserve {} of memory for {what}; use a smaller --n (or --d)",
    bytes_text(*bytes)
)]
pub struct OutOfMemory {
    /// What the memory was for.
    pub what: String,
    /// Bytes asked for.
    pub bytes: u64,
}

/// `bytes` for people: `512 B`, `1.5 MB`, `12.9 GB` (powers of 1000).
pub fn bytes_text(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// Checks that `bytes` can be reserved right now (reserves them and gives them back at once):
/// the up-front test before work whose buffers are allocated later, in several pieces.
pub fn check_available(bytes: u64, what: impl Into<String>) -> Result<(), OutOfMemory> {
    let fail = |what: String| OutOfMemory { what, bytes };
    let Ok(len) = usize::try_from(bytes) else {
        return Err(fail(what.into()));
    };
    let mut probe: Vec<u8> = Vec::new();
    probe.try_reserve_exact(len).map_err(|_| fail(what.into()))
}

/// A vector of `len` copies of `value`, or an error when the memory cannot be reserved.
pub fn try_filled<T: Clone>(
    len: usize,
    value: T,
    what: impl Into<String>,
) -> Result<Vec<T>, OutOfMemory> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| OutOfMemory {
        what: what.into(),
        bytes: (len as u64).saturating_mul(std::mem::size_of::<T>() as u64),
    })?;
    v.resize(len, value);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_request_is_an_error_not_an_abort() {
        let e = try_filled(usize::MAX / 4, 0u32, "a test buffer").unwrap_err();
        assert_eq!(e.bytes, u64::MAX / 4 * 4);
        assert!(e.to_string().starts_with("could not reserve"), "{e}");
        assert!(e.to_string().contains("a test buffer"), "{e}");
        let e = check_available(u64::MAX, "everything").unwrap_err();
        assert_eq!(e.bytes, u64::MAX);
        assert_eq!(try_filled(3, 7u8, "three bytes").unwrap(), vec![7, 7, 7]);
        assert!(check_available(1 << 20, "1 MiB").is_ok());
        assert_eq!(bytes_text(12_884_901_888), "12.9 GB");
        assert_eq!(bytes_text(999), "999 B");
    }
}
