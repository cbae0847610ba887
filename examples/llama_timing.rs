//! Times the llama forward pass on SmolLM2 (a measurement, not a test): load, one dense
//! forward at 512 and 2048 tokens, and the work of `attnscope model quality` at 512 tokens
//! with `local(w=64)` (load + dense and pattern passes + logits + losses), then the peak RSS;
//! first the top-5 next tokens after "The capital of France is".
//!
//! ```text
//! ATTNSCOPE_MODELS=/path/to/models cargo run --release --example llama_timing [TEXT_FILE]
//! ```

use attnscope::model::{find, load, Attention, Model, NoHooks, SMOLLM2_FILE};
use attnscope::pattern::{PatternKind, PatternParams};
use std::time::Instant;

/// Mean next-token cross-entropy (natural log) over positions 1 … n−1.
fn loss(m: &dyn Model, hidden: &ndarray::Array2<f32>, ids: &[u32]) -> f64 {
    let logits = m.logits(hidden.view()).expect("decoder");
    let mut total = 0.0;
    for (i, row) in logits.outer_iter().enumerate().take(ids.len() - 1) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        total += lse - row[ids[i + 1] as usize] as f64;
    }
    total / (ids.len() - 1) as f64
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = find(SMOLLM2_FILE).ok_or("SmolLM2 not found: set ATTNSCOPE_MODELS")?;
    let text = match std::env::args().nth(1) {
        Some(f) => std::fs::read_to_string(f)?,
        None => "The history of attention in neural networks is long and varied. Researchers \
                 first used it to align words in translation, then to read images, and at last \
                 built whole models from it alone. Each token looks at the others, weighs them \
                 and mixes what it finds; the cost grows with the square of the length, 1024 \
                 tokens costing four times what 512 do. Sparse patterns keep a band of nearby \
                 tokens, a few distant ones and perhaps a handful of global sinks.\n"
            .repeat(60),
    };
    let t0 = Instant::now();
    let m = load(&path)?;
    let load_s = t0.elapsed().as_secs_f64();
    println!("load: {load_s:.3} s");
    let prompt = m.tokenize("The capital of France is", 64)?.ids;
    let h = m.forward(&prompt, Attention::Dense, &mut NoHooks)?;
    let logits = m.logits(h.view()).ok_or("not a decoder")?;
    let last = logits.row(prompt.len() - 1);
    let max = last.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let total: f64 = last.iter().map(|&x| (x as f64 - max).exp()).sum();
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
    for &i in &order[..5] {
        let p = (last[i] as f64 - max).exp() / total;
        println!("next {i:>6} {:?} {p:.4}", m.token_text(i as u32));
    }
    let all = m.tokenize(&text, 4096)?.ids;
    for n in [512usize, 2048] {
        let ids = &all[..n.min(all.len())];
        let t = Instant::now();
        let h = m.forward(ids, Attention::Dense, &mut NoHooks)?;
        let fwd = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = m.logits(h.view());
        let lg = t.elapsed().as_secs_f64();
        println!(
            "n = {}: forward {:.0} ms, logits {:.0} ms, peak RSS {:.0} MB",
            ids.len(),
            fwd * 1e3,
            lg * 1e3,
            peak_rss_mb()
        );
    }
    // The work of `model quality --max-tokens 512 --pattern "local(w=64)"`, load included.
    let t = Instant::now();
    let m = load(&path)?;
    let ids = m.tokenize(&text, 512)?.ids;
    let n = ids.len();
    let dense = m.forward(&ids, Attention::Dense, &mut NoHooks)?;
    let loss_dense = loss(m.as_ref(), &dense, &ids);
    let p = PatternParams::new(PatternKind::Local, n)
        .window(64)
        .causal(true)
        .build()?;
    let local = m.forward(&ids, Attention::Pattern(&p), &mut NoHooks)?;
    let loss_local = loss(m.as_ref(), &local, &ids);
    println!(
        "quality n = {n}: loss dense {loss_dense:.4}, local(w=64) {loss_local:.4}; wall {:.3} s",
        t.elapsed().as_secs_f64()
    );
    println!("peak RSS {:.0} MB", peak_rss_mb());
    Ok(())
}
