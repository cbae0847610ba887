#!/usr/bin/env python3
"""The share of the work-skipping speedup each pattern's best kernel delivers.

share = (dense min time / best kernel min time) / (n² / nnz): 1.0 means the kernel is as much
faster than dense as it skips work. See README, "How much of the skipped work turns into speed".

One or more binaries (e.g. an older build and today's) are timed interleaved: each round runs
every pattern with every binary, one `attnscope bench` run each (`dense` and the sparse kernels
together, min of --repeats runs). Over the rounds, a kernel's time is the min (and the median)
of its per-run minima, and `dense` is the minimum over every run of every binary: one common
baseline, so that the host's noise moves no binary's shares more than another's. The median
share divides each binary's median `dense` by its best kernel's median time.

Usage: scripts/share.py [--attnscope BIN [BIN ...]] [--rounds 10] [--n 8192] [--repeats 5]
                        [--threads T]
"""
import argparse
import json
import statistics
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
# Every kernel but `masked` (dense work plus the mask: it never wins).
KERNELS = "dense,csr,block,permuted"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attnscope", nargs="+", default=["target/release/attnscope"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int)
    a = ap.parse_args()
    extra = ["--threads", str(a.threads)] if a.threads else []
    dense = {b: [] for b in a.attnscope}  # every run's dense minimum, per binary
    times = {}  # (pattern, binary, kernel) -> per-run minima
    label, skip = {}, {}
    for _ in range(a.rounds):
        for i, args in enumerate(PATTERNS):
            for b in a.attnscope:
                cmd = [b, "bench", *args, "--n", str(a.n), "--repeats", str(a.repeats),
                       "--kernels", KERNELS, "--json", *extra]
                r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                label[i] = r["label"]
                for k in r["results"]:
                    if k.get("skipped"):
                        continue
                    if k["kernel"] == "dense":
                        dense[b].append(k["min_ms"])
                        skip[i] = r["n"] ** 2 / (k["flops_useful"] / (4 * r["d"]))
                    else:
                        times.setdefault((i, b, k["kernel"]), []).append(k["min_ms"])
    base = min(min(v) for v in dense.values())
    print(f"dense: common min {base:.1f} ms; per binary min / median "
          + ", ".join(f"{min(v):.1f} / {statistics.median(v):.1f}" for v in dense.values()))
    for i in range(len(PATTERNS)):
        line = f"{label[i]:<42} n²/nnz {skip[i]:6.1f}"
        for b in a.attnscope:
            runs = [(k, v) for (j, bb, k), v in times.items() if j == i and bb == b]
            kern, v = min(runs, key=lambda kv: min(kv[1]))
            share = base / min(v) / skip[i]
            med = statistics.median(dense[b]) / statistics.median(v) / skip[i]
            line += (f" | {kern} {min(v):.2f} / {statistics.median(v):.2f} ms"
                     f" share {share:.2f} ({med:.2f})")
        print(line)


if __name__ == "__main__":
    main()
