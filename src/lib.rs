//! # attnscope
//!
//! See and measure sparse attention. attnscope computes the masks of the atrous (dilated),
//! local and sparse (atrous ∪ local) self-attention of GPT-3 and the Sparse Transformer —
//! and of strided, fixed, Longformer and BigBird — counts them exactly, lays them out as
//! CSR and block-sparse structures, and renders them.
//!
//! ```
//! use attnscope::pattern::{BlockStats, PatternKind, PatternParams};
//!
//! // The seed's example: n = 64, stride k = 4, window w = 3.
//! let sparse = PatternParams::new(PatternKind::Sparse, 64).stride(4).window(3).build()?;
//! assert!(sparse.allows(10, 2)); // distance 8 is a multiple of k
//! assert!(sparse.allows(10, 7)); // distance 3 is inside the window
//! assert!(!sparse.allows(10, 5)); // distance 5 is neither
//! assert_eq!(sparse.nnz(), 1396); // local 436 + atrous 1024 − diagonal 64
//! let blocks = BlockStats::compute(&sparse, 16)?;
//! assert_eq!(blocks.blocks_empty, 0);
//! # Ok::<(), attnscope::pattern::PatternError>(())
//! ```

// `a % k == 0` reads like the contract's "mod" rules (docs/contract.md); `is_multiple_of` (stable since 1.87, linted
// now that the MSRV is 1.89 for the AVX-512 intrinsics) would hide the formula.
#![allow(clippy::manual_is_multiple_of)]

// What a pattern keeps on a real model: needs `model`, so desktop only as well.
#[cfg(not(target_arch = "wasm32"))]
pub mod analysis;
pub mod app;
pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod export;
pub mod inputs;
pub mod kernel;
pub mod memory;
// Real models read multi-gigabyte files through mmap: desktop only (README "Run it in a browser").
#[cfg(not(target_arch = "wasm32"))]
pub mod model;
pub mod pattern;
pub mod presets;
pub mod reach;
pub mod render;
pub mod stats;
pub mod sweep;

/// Largest sequence length the desktop app accepts.
pub const APP_MAX_N: usize = 65_536;
