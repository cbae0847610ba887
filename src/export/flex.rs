//! A pattern as a Python `mask_mod` for PyTorch FlexAttention (README, "FlexAttention export").
//!
//! The module defines `mask_mod(b, h, q_idx, kv_idx)` written only with operators that work on
//! PyTorch tensors and NumPy arrays alike (`abs`, `%`, `//`, comparisons, `&`, `|`), so the
//! same function feeds `torch.nn.attention.flex_attention.create_block_mask` and can be checked
//! with NumPy index grids. BigBird's random blocks become a constant table looked up with the
//! index's own library.

use crate::pattern::expr::{Expr, Term};
use crate::pattern::{Pattern, TermKind};
use std::fmt::Write;

/// The Python source of a module defining `mask_mod` for `p`.
pub fn python_module(p: &Pattern) -> String {
    let mut tables = Vec::new();
    let body = expr_py(p.expr(), &mut tables, p);
    let label = p.label();
    let n = p.n();
    let mut s = String::new();
    let _ = writeln!(s, "# FlexAttention mask_mod written by attnscope.");
    let _ = writeln!(s, "#");
    let _ = writeln!(s, "# pattern: {label}");
    let _ = writeln!(
        s,
        "# n = {n} (the rule holds for any length{})",
        if tables.is_empty() {
            ""
        } else {
            "; BigBird's block table is for this n"
        }
    );
    let _ = writeln!(s, "#");
    let _ = writeln!(s, "# Usage with PyTorch (2.5 or later):");
    let _ = writeln!(
        s,
        "#   from torch.nn.attention.flex_attention import create_block_mask, flex_attention"
    );
    let _ = writeln!(s, "#   from this_module import mask_mod");
    let _ = writeln!(
        s,
        "#   block_mask = create_block_mask(mask_mod, B=None, H=None, Q_LEN={n}, KV_LEN={n})"
    );
    let _ = writeln!(
        s,
        "#   out = flex_attention(q, k, v, block_mask=block_mask)  # q, k, v: (B, H, {n}, D)"
    );
    let _ = writeln!(
        s,
        "# With NumPy: q, kv = numpy.indices(({n}, {n})); mask = mask_mod(0, 0, q, kv)"
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "LABEL = {}", py_str(&label));
    let _ = writeln!(s, "N = {n}");
    for (x, (b, rows)) in tables.iter().enumerate() {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "# Allowed block pairs of BigBird table {x}: block size {b}, row = query block."
        );
        let _ = writeln!(s, "BLOCKS_{x} = [");
        for r in rows {
            let bits: String = r.iter().map(|&v| if v { '1' } else { '0' }).collect();
            let _ = writeln!(s, "    {},", py_str(&bits));
        }
        let _ = writeln!(s, "]");
    }
    if !tables.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "_CACHE = {{}}");
        let _ = writeln!(s);
        let _ = writeln!(s, "def _table(rows, like):");
        let _ = writeln!(
            s,
            "    \"\"\"The 0/1 table `rows` as a boolean array of the library (and device) of `like`.\"\"\""
        );
        let _ = writeln!(s, "    if type(like).__module__.split('.')[0] == 'torch':");
        let _ = writeln!(s, "        import torch");
        let _ = writeln!(s, "        key = (id(rows), str(like.device))");
        let _ = writeln!(s, "        if key not in _CACHE:");
        let _ = writeln!(s, "            _CACHE[key] = torch.tensor([[c == '1' for c in r] for r in rows], dtype=torch.bool, device=like.device)");
        let _ = writeln!(s, "        return _CACHE[key]");
        let _ = writeln!(s, "    import numpy");
        let _ = writeln!(s, "    key = (id(rows), 'numpy')");
        let _ = writeln!(s, "    if key not in _CACHE:");
        let _ = writeln!(
            s,
            "        _CACHE[key] = numpy.array([[c == '1' for c in r] for r in rows], dtype=bool)"
        );
        let _ = writeln!(s, "    return _CACHE[key]");
    }
    let _ = writeln!(s);
    let _ = writeln!(s);
    let _ = writeln!(s, "def mask_mod(b, h, q_idx, kv_idx):");
    let _ = writeln!(
        s,
        "    \"\"\"True where query q_idx may attend to key kv_idx: {label}.\"\"\""
    );
    let _ = writeln!(s, "    d = q_idx - kv_idx");
    let _ = writeln!(s, "    return {body}");
    s
}

/// A Python string literal.
fn py_str(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn expr_py(e: &Expr, tables: &mut Vec<(usize, Vec<Vec<bool>>)>, p: &Pattern) -> String {
    match e {
        Expr::Term(t) => format!("({})", term_py(t, tables, p)),
        Expr::Union(v) => format!(
            "({})",
            v.iter()
                .map(|m| expr_py(m, tables, p))
                .collect::<Vec<_>>()
                .join(" | ")
        ),
        Expr::Inter(v) => format!(
            "({})",
            v.iter()
                .map(|m| expr_py(m, tables, p))
                .collect::<Vec<_>>()
                .join(" & ")
        ),
    }
}

/// One term as a Python boolean expression over `q_idx`, `kv_idx` and `d = q_idx − kv_idx`.
fn term_py(t: &Term, tables: &mut Vec<(usize, Vec<Vec<bool>>)>, p: &Pattern) -> String {
    let v = |key: &str| t.get(key);
    match t.kind {
        TermKind::Dense => "(q_idx >= 0) & (kv_idx >= 0)".into(),
        TermKind::Local => format!("abs(d) <= {}", v("w")),
        TermKind::Atrous => format!("abs(d) % {} == 0", v("k")),
        TermKind::Sink => format!("kv_idx < {}", v("s")),
        TermKind::Global => format!("(q_idx < {g}) | (kv_idx < {g})", g = v("g")),
        TermKind::Causal => "kv_idx <= q_idx".into(),
        TermKind::Sparse => format!("(abs(d) <= {}) | (abs(d) % {} == 0)", v("w"), v("k")),
        TermKind::Strided => format!("(d >= 0) & ((d < {l}) | (d % {l} == 0))", l = v("l")),
        TermKind::Fixed => format!(
            "(q_idx // {l} == kv_idx // {l}) | (kv_idx % {l} >= {lc})",
            l = v("l"),
            lc = v("l") - v("c")
        ),
        TermKind::Longformer => format!(
            "(abs(d) <= {w}) | (q_idx < {g}) | (kv_idx < {g})",
            w = v("w"),
            g = v("g")
        ),
        TermKind::Bigbird => {
            let b = v("b") as usize;
            let table = crate::pattern::structure::BlockTable::bigbird(
                p.n(),
                b,
                v("wb"),
                v("gb"),
                v("r"),
                v("seed"),
            );
            let rows: Vec<Vec<bool>> = (0..table.nb)
                .map(|bi| {
                    let mut row = vec![false; table.nb];
                    for &bj in &table.cols[bi] {
                        row[bj as usize] = true;
                    }
                    row
                })
                .collect();
            let x = tables.len();
            tables.push((b, rows));
            format!("_table(BLOCKS_{x}, q_idx)[q_idx // {b}, kv_idx // {b}]")
        }
    }
}
