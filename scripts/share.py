#!/usr/bin/env python3
"""The share of the work-skipping speedup each pattern's best kernel delivers.

share = (dense min time / best kernel min time) / (n² / nnz): 1.0 means the kernel is as much
faster than dense as it skips work. All kernels of one pattern are timed in one `attnscope bench`
run (min of --repeats runs). See README, "Which kernel wins when, and why".

Usage: scripts/share.py [--attnscope BIN] [--n 8192] [--repeats 5] [--threads T]
"""
import argparse
import json
import subprocess

PATTERNS = [
    ["--pattern", "sparse", "--stride", "64", "--window", "32"],
    ["--pattern", "sparse", "--stride", "64", "--window", "32", "--causal"],
    ["--pattern", "strided", "--stride", "90"],
    ["--pattern", "longformer", "--window", "64", "--global", "16"],
    ["--pattern", "bigbird", "--block", "64"],
    ["--pattern", "fixed", "--stride", "128", "--summary", "8"],
    ["--pattern", "(local(w=64) | sink(s=4)) & causal"],
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attnscope", default="target/release/attnscope")
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int)
    a = ap.parse_args()
    extra = ["--threads", str(a.threads)] if a.threads else []
    for args in PATTERNS:
        cmd = [a.attnscope, "bench", *args, "--n", str(a.n), "--repeats", str(a.repeats), "--json", *extra]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        res = {k["kernel"]: k for k in r["results"] if not k.get("skipped")}
        dense = res["dense"]["min_ms"]
        skip = r["n"] ** 2 / (res["dense"]["flops_useful"] / (4 * r["d"]))
        best = min((k for k in res.values() if k["kernel"] not in ("dense", "masked")), key=lambda k: k["min_ms"])
        share = dense / best["min_ms"] / skip
        print(f"{r['label']:<42} best {best['kernel']:<9} {best['min_ms']:8.2f} ms   dense {dense:8.2f} ms   "
              f"n²/nnz {skip:6.2f}   share {share:.2f}")


if __name__ == "__main__":
    main()
