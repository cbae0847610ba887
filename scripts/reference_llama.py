#!/usr/bin/env python3
"""Independent float32 NumPy reference of the llama forward pass attnscope runs on a GGUF file.

Development tool only (not a dependency of the project): it checks the Rust reader, tokenizer
and forward pass in `src/model/` against a separate implementation.

- Weights: read and dequantised by the `gguf` pip package (not attnscope's reader).
- Tokens: a plain byte-level BPE written here (the `smollm` pre-tokenizer: every digit alone,
  then the GPT-2 split regex; control tokens matched first), not the `tokenizers` library.
- Forward: RMSNorm, rotary embedding on adjacent pairs (x[2i], x[2i+1]) with angle
  pos * theta^(-2i/d) (the GGUF llama convention), grouped-query causal attention, SwiGLU,
  final norm, output tied to the token embeddings unless `output.weight` exists.

Usage (in a venv with numpy, gguf and regex):

    python scripts/reference_llama.py MODEL.gguf --prompt "The capital of France is" --top 5
    python scripts/reference_llama.py MODEL.gguf --tokens "Hello, world!"
    python scripts/reference_llama.py MODEL.gguf --text FILE --max-tokens 512 --time
    python scripts/reference_llama.py MODEL.gguf --prompt ... --dump DIR --layers 0,15,29   (one .npy per array)
"""

import argparse
import json
import sys
import time

import numpy as np
import regex
from gguf import GGUFReader
from gguf.quants import dequantize

SMOLLM_SPLITS = [
    r"\p{N}",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
]


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Bpe:
    def __init__(self, reader):
        f = reader.fields
        self.tokens = f["tokenizer.ggml.tokens"].contents()
        self.types = f["tokenizer.ggml.token_type"].contents()
        merges = f["tokenizer.ggml.merges"].contents()
        self.ranks = {tuple(m.split(" ", 1)): i for i, m in enumerate(merges)}
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.pre = f["tokenizer.ggml.pre"].contents()
        if self.pre != "smollm":
            sys.exit(f"this reference implements the smollm pre-tokenizer, not {self.pre}")
        add_bos = f.get("tokenizer.ggml.add_bos_token")
        self.bos = f["tokenizer.ggml.bos_token_id"].contents() if add_bos and add_bos.contents() else None
        self.specials = sorted(
            (t for t, ty in zip(self.tokens, self.types) if ty == 3), key=len, reverse=True
        )
        self.b2u = bytes_to_unicode()

    def split(self, text):
        pieces = [text]
        for pattern in SMOLLM_SPLITS:
            out = []
            for p in pieces:
                last = 0
                for m in regex.finditer(pattern, p):
                    if m.start() > last:
                        out.append(p[last : m.start()])
                    out.append(m.group())
                    last = m.end()
                if last < len(p):
                    out.append(p[last:])
            pieces = out
        return pieces

    def word(self, w):
        parts = [self.b2u[b] for b in w.encode("utf-8")]
        while len(parts) > 1:
            best = min(
                range(len(parts) - 1),
                key=lambda i: self.ranks.get((parts[i], parts[i + 1]), 1 << 60),
            )
            if (parts[best], parts[best + 1]) not in self.ranks:
                break
            parts[best : best + 2] = [parts[best] + parts[best + 1]]
        return [self.ids[p] for p in parts]

    def encode(self, text):
        ids = [] if self.bos is None else [self.bos]
        if not self.specials:
            chunks = [text]
        else:
            pat = "(" + "|".join(regex.escape(s) for s in self.specials) + ")"
            chunks = regex.split(pat, text)
        for c in chunks:
            if c in self.specials:
                ids.append(self.ids[c])
                continue
            for w in self.split(c):
                ids.extend(self.word(w))
        return ids


class Llama:
    def __init__(self, reader):
        f = reader.fields
        arch = f["general.architecture"].contents()
        if arch != "llama":
            sys.exit(f"not a llama model: {arch}")
        g = lambda k: f[f"llama.{k}"].contents()
        self.layers = g("block_count")
        self.heads = g("attention.head_count")
        self.kv_heads = g("attention.head_count_kv")
        self.hidden = g("embedding_length")
        self.head_dim = self.hidden // self.heads
        self.eps = g("attention.layer_norm_rms_epsilon")
        self.theta = g("rope.freq_base") if "llama.rope.freq_base" in f else 10000.0
        self.w = {}
        for t in reader.tensors:
            a = dequantize(t.data, t.tensor_type).astype(np.float32)
            self.w[t.name] = a.reshape([int(x) for x in reversed(t.shape)]) if a.ndim > 1 else a
        self.out = self.w.get("output.weight", self.w["token_embd.weight"])

    def rms(self, x, w):
        return (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps)) * w

    def rope(self, x):
        # x: (heads, n, d); rotate adjacent pairs (2i, 2i + 1) by pos * theta^(-2i/d).
        n, d = x.shape[1], x.shape[2]
        inv = self.theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
        ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
        cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    def forward(self, ids, dump_layers=(), window=None):
        """Last hidden states (after the final norm); `window` = local(w) ∩ causal if given."""
        n = len(ids)
        x = self.w["token_embd.weight"][ids].astype(np.float32)
        hd, rep = self.head_dim, self.heads // self.kv_heads
        mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
        if window is not None:
            i = np.arange(n)
            mask[(i[:, None] - i[None, :]) > window] = -np.inf
        dumps = {}
        for l in range(self.layers):
            p = f"blk.{l}."
            h = self.rms(x, self.w[p + "attn_norm.weight"])
            q = (h @ self.w[p + "attn_q.weight"].T).reshape(n, self.heads, hd).transpose(1, 0, 2)
            k = (h @ self.w[p + "attn_k.weight"].T).reshape(n, self.kv_heads, hd).transpose(1, 0, 2)
            v = (h @ self.w[p + "attn_v.weight"].T).reshape(n, self.kv_heads, hd).transpose(1, 0, 2)
            q, k = self.rope(q), self.rope(k)
            if l in dump_layers:
                dumps[f"q{l}"], dumps[f"k{l}"], dumps[f"v{l}"] = q, k, v
            kk, vv = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
            s = q @ kk.transpose(0, 2, 1) / np.float32(np.sqrt(hd)) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = (s @ vv).transpose(1, 0, 2).reshape(n, self.hidden)
            if l in dump_layers:
                dumps[f"o{l}"] = o
            x = x + o @ self.w[p + "attn_output.weight"].T
            h = self.rms(x, self.w[p + "ffn_norm.weight"])
            gate = h @ self.w[p + "ffn_gate.weight"].T
            up = h @ self.w[p + "ffn_up.weight"].T
            x = x + ((gate / (1 + np.exp(-gate))) * up) @ self.w[p + "ffn_down.weight"].T
            if l in dump_layers:
                dumps[f"x{l}"] = x
        return self.rms(x, self.w["output_norm.weight"]), dumps

    def logits(self, hidden):
        return hidden @ self.out.T


def loss(logits, ids):
    lg = logits[:-1].astype(np.float64)
    lg -= lg.max(-1, keepdims=True)
    lse = np.log(np.exp(lg).sum(-1))
    return float(np.mean(lse - lg[np.arange(len(ids) - 1), ids[1:]]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt")
    ap.add_argument("--text")
    ap.add_argument("--tokens", help="print the ids of this string as JSON and exit")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--dump")
    ap.add_argument("--layers", default="0")
    ap.add_argument("--window", type=int, help="also run with local(w) and print both losses")
    ap.add_argument("--time", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    reader = GGUFReader(a.model)
    bpe = Bpe(reader)
    if a.tokens is not None:
        print(json.dumps(bpe.encode(a.tokens)))
        return
    model = Llama(reader)
    t_load = time.perf_counter() - t0
    text = a.prompt if a.prompt is not None else open(a.text, encoding="utf-8").read()
    ids = bpe.encode(text)[: a.max_tokens]
    layers = {int(x) for x in a.layers.split(",") if x}
    t1 = time.perf_counter()
    hidden, dumps = model.forward(ids, layers)
    logits = model.logits(hidden)
    t_fwd = time.perf_counter() - t1
    result = {"n": len(ids), "ids": ids[:64], "load_s": t_load, "forward_s": t_fwd}
    result["loss_dense"] = loss(logits, np.array(ids)) if len(ids) > 1 else None
    if a.window is not None:
        t2 = time.perf_counter()
        h2, _ = model.forward(ids, (), a.window)
        result["loss_window"] = loss(model.logits(h2), np.array(ids))
        result["forward_window_s"] = time.perf_counter() - t2
    result["total_s"] = time.perf_counter() - t0
    last = logits[-1].astype(np.float64)
    p = np.exp(last - last.max())
    p /= p.sum()
    top = np.argsort(-p)[: a.top]
    result["top"] = [
        {"id": int(i), "token": bytes(reader.fields["tokenizer.ggml.tokens"].contents()[i], "utf-8").decode("utf-8", "replace"), "prob": float(p[i])}
        for i in top
    ]
    if a.dump:
        import os

        os.makedirs(a.dump, exist_ok=True)
        arrays = dict(ids=np.array(ids, dtype=np.int64), hidden=hidden, logits=logits, **dumps)
        for name, arr in arrays.items():
            np.save(os.path.join(a.dump, f"{name}.npy"), np.ascontiguousarray(arr))
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
