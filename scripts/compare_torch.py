#!/usr/bin/env python3
"""Time PyTorch on the same attention problems as `attnscope bench`, and check that
`attnscope run` agrees with PyTorch on the same Q, K, V.

Needs torch (CPU is enough) and numpy; torch is never a dependency of attnscope itself.

    python3 scripts/compare_torch.py --pattern sparse --n 4096 --stride 64 --window 32 --threads 2
    attnscope bench --pattern sparse --n 4096 --stride 64 --window 32 --threads 2

Prints median ms and useful GFLOP/s (4 · d · nnz / time, as `attnscope bench`) for
  sdpa-dense   scaled_dot_product_attention without a mask (n² work),
  sdpa-mask    the same with the pattern as a boolean mask,
  flex         compiled FlexAttention with a BlockMask built from the pattern (block 128).
With --check ATTNSCOPE_BINARY it also writes Q/K/V as .npy, runs `attnscope run` with every
kernel and prints the largest relative difference to PyTorch's masked output.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def allowed(kind, i, j, k, w, causal):
    """The docs/contract.md section 1 rules for the patterns this script supports (tensors i, j)."""
    dist = (i - j).abs()
    if kind == "dense":
        m = dist >= 0
    elif kind == "local":
        m = dist <= w
    elif kind == "atrous":
        m = dist % k == 0
    elif kind == "sparse":
        m = (dist <= w) | (dist % k == 0)
    else:
        raise SystemExit(f"error: pattern {kind!r} not supported here; use dense, local, atrous or sparse")
    if causal:
        m = m & (j <= i)
    return m


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
    ap.add_argument("--pattern", default="sparse")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--stride", type=int, default=64)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-flex", action="store_true", help="skip FlexAttention (needs torch.compile)")
    ap.add_argument("--check", metavar="ATTNSCOPE_BINARY", help="compare `attnscope run` outputs")
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
    idx = torch.arange(n)
    mask = allowed(a.pattern, idx[:, None], idx[None, :], a.stride, a.window, a.causal)
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

            kind, kk, ww, causal = a.pattern, a.stride, a.window, a.causal

            def mask_mod(b, h, qi, kj):
                return allowed(kind, qi, kj, kk, ww, causal)

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
                    cmd = [a.check, "run", "--pattern", a.pattern, "--kernel", kernel,
                           "--q", paths["q"], "--k", paths["k"], "--v", paths["v"], "-o", out]
                    if a.pattern in ("atrous", "sparse"):
                        cmd += ["--stride", str(a.stride)]
                    if a.pattern in ("local", "sparse"):
                        cmd += ["--window", str(a.window)]
                    if a.causal:
                        cmd.append("--causal")
                    subprocess.run(cmd, check=True)
                    got = np.load(out)
                    err = np.abs(got - want).max() / np.abs(want).max()
                    print(f"attnscope {kernel:<9} max relative difference to torch: {err:.2e}")


if __name__ == "__main__":
    main()
