#!/usr/bin/env python3
"""Independent float32 reference for all-MiniLM-L6-v2 (a developer script, not run by CI).

Tokenizes fixed strings with Hugging Face `tokenizers` (the Python package) and runs a plain
NumPy BERT forward pass, printing the numbers that `tests/model_bert.rs` hard-codes:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy tokenizers safetensors
    /tmp/venv/bin/python scripts/minilm_reference.py models/all-MiniLM-L6-v2

Dense attention, mean pooling over every token ([CLS] and [SEP] included), as
sentence-transformers does for one unpadded sentence.
"""
import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

TEXTS = [
    "Hello, world! 123 apples cost $4.50.\nNew line here.",
    "The cat sits on the mat.",
    "A cat is sitting on a mat.",
    "Stock markets fell sharply on Tuesday.",
]


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True, dtype=np.float64)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (((x - mean) / np.sqrt(var + eps)) * w + b).astype(np.float32)


def gelu(x):
    erf = np.vectorize(math.erf)
    return (0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))).astype(np.float32)


def forward(t, cfg, ids):
    n = len(ids)
    h = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    hd = h // heads
    eps = cfg["layer_norm_eps"]
    x = (
        t["embeddings.word_embeddings.weight"][ids]
        + t["embeddings.position_embeddings.weight"][:n]
        + t["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."

        def lin(name, inp):
            return inp @ t[p + name + ".weight"].T + t[p + name + ".bias"]

        q = lin("attention.self.query", x).reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(n, heads, hd).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(hd))
        s = s - s.max(-1, keepdims=True)
        e = np.exp(s)
        a = (e / e.sum(-1, keepdims=True)) @ v
        a = a.transpose(1, 0, 2).reshape(n, h)
        x = layer_norm(
            x + lin("attention.output.dense", a),
            t[p + "attention.output.LayerNorm.weight"],
            t[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        f = gelu(lin("intermediate.dense", x))
        x = layer_norm(
            x + lin("output.dense", f),
            t[p + "output.LayerNorm.weight"],
            t[p + "output.LayerNorm.bias"],
            eps,
        )
    return x


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "models/all-MiniLM-L6-v2"
    cfg = json.load(open(f"{folder}/config.json"))
    tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
    tok.no_truncation()
    tok.no_padding()
    t = load_file(f"{folder}/model.safetensors")
    pooled = []
    for text in TEXTS:
        enc = tok.encode(text)
        x = forward(t, cfg, enc.ids)
        m = x.mean(0)
        pooled.append(m)
        print(repr(text))
        print("  ids", enc.ids)
        print("  tokens", enc.tokens)
        print("  hidden[1][:6]", [round(float(v), 6) for v in x[1][:6]])
        print("  hidden[-1][:6]", [round(float(v), 6) for v in x[-1][:6]])
        print("  pooled[:8]", [round(float(v), 6) for v in m[:8]])

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    print("cos(paraphrase)", round(cos(pooled[1], pooled[2]), 6))
    print("cos(unrelated)", round(cos(pooled[1], pooled[3]), 6))


if __name__ == "__main__":
    main()
