#!/usr/bin/env python3
"""Time PyTorch on the same attention problems as `attnscope bench`, and check that
`attnscope run` agrees with PyTorch on the same Q, K, V.

Needs torch (CPU is enough) and numpy; torch is never a dependency of attnscope itself.
The mask comes from attnscope itself: `attnscope export --format flex` writes the pattern's
FlexAttention `mask_mod` (README "FlexAttention export"), which this script imports and uses
both for FlexAttention's BlockMask and, evaluated on index grids, as SDPA's boolean mask. So any
pattern or expression attnscope takes works here.

    python3 scripts/compare_torch.py --attnscope target/release/attnscope \
        --pattern sparse --n 4096 --stride 64 --window 32 --threads 2 --check
    python3 scripts/compare_torch.py --pattern "(local(w=64) | sink(s=4)) & causal" --n 4096
    attnscope bench --pattern sparse --n 4096 --stride 64 --window 32 --threads 2

Prints median ms and useful GFLOP/s (4 · d · nnz / time, as `attnscope bench`) for
  sdpa-dense   scaled_dot_product_attention without a mask (n² work),
  sdpa-mask    the same with the pattern as a boolean mask,
  flex         compiled FlexAttention with a BlockMask built from the pattern (block 128).
With --check it also writes Q/K/V as .npy, runs `attnscope run` with every kernel and prints
the largest relative difference to PyTorch's masked output.
"""

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time


def pattern_flags(a, with_n=True):
    """The pattern flags of `attnscope export` (with --n) or `run` (n from the .npy files)."""
    flags = ["--pattern", a.pattern] + (["--n", str(a.n)] if with_n else [])
    if a.stride is not None:
        flags += ["--stride", str(a.stride)]
    if a.window is not None:
        flags += ["--window", str(a.window)]
    if a.causal:
        flags.append("--causal")
    return flags


def load_mask_mod(binary, a, tmp):
    """Exports the pattern's FlexAttention mask_mod with attnscope and imports it."""
    path = os.path.join(tmp, "attnscope_mask.py")
    subprocess.run([binary, "export", *pattern_flags(a), "--format", "flex", "-o", path], check=True)
    spec = importlib.util.spec_from_file_location("attnscope_mask", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.mask_mod


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attnscope", default="target/release/attnscope", help="the attnscope binary")
    ap.add_argument("--pattern", default="sparse", help="a pattern name or expression")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--stride", type=int)
    ap.add_argument("--window", type=int)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-flex", action="store_true", help="skip FlexAttention (needs torch.compile)")
    ap.add_argument("--check", action="store_true", help="compare `attnscope run` outputs")
    a = ap.parse_args()
    try:
        import numpy as np
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        sys.exit(f"error: {e.name} is not installed; pip install torch numpy")

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    n, d = a.n, a.d
    q, k, v = (torch.randn(1, 1, n, d) for _ in range(3))
    tmp_dir = tempfile.TemporaryDirectory()
    mask_mod = load_mask_mod(a.attnscope, a, tmp_dir.name)
    idx = torch.arange(n)
    zero = torch.zeros((), dtype=torch.long)
    mask = mask_mod(zero, zero, idx[:, None], idx[None, :])
    nnz = int(mask.sum())
    useful = 4 * d * nnz
    print(f"torch {torch.__version__}, {a.threads} threads, pattern {a.pattern} n={n} d={d} nnz={nnz} density={nnz / n / n:.4f}")

    def report(name, ms):
        med, best = ms
        print(f"{name:<12} median {med:9.3f} ms  min {best:9.3f} ms  {useful / med / 1e6:8.1f} useful GFLOP/s")

    with torch.no_grad():
        report("sdpa-dense", timed(lambda: F.scaled_dot_product_attention(q, k, v), a.repeats))
        report("sdpa-mask", timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), a.repeats))
        if not a.no_flex:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention

            bm = create_block_mask(mask_mod, 1, 1, n, n, device="cpu")
            flex = torch.compile(flex_attention)
            report("flex", timed(lambda: flex(q, k, v, block_mask=bm), a.repeats))

        if a.check:
            want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[0, 0].numpy()
            with tempfile.TemporaryDirectory() as tmp:
                paths = {}
                for name, t in (("q", q), ("k", k), ("v", v)):
                    paths[name] = os.path.join(tmp, f"{name}.npy")
                    np.save(paths[name], t[0, 0].numpy())
                for kernel in ("masked", "csr", "block", "permuted"):
                    out = os.path.join(tmp, f"o-{kernel}.npy")
                    cmd = [a.attnscope, "run", *pattern_flags(a, with_n=False), "--kernel", kernel,
                           "--q", paths["q"], "--k", paths["k"], "--v", paths["v"], "-o", out]
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    if r.returncode != 0:
                        print(f"attnscope {kernel:<9} {r.stderr.strip()}")
                        continue
                    got = np.load(out)
                    err = np.abs(got - want).max() / np.abs(want).max()
                    print(f"attnscope {kernel:<9} max relative difference to torch: {err:.2e}")


if __name__ == "__main__":
    main()
