#!/usr/bin/env bash
# Builds attnscope for the browser into web/dist/ (README "Run it in a browser"): a release
# build for wasm32-unknown-unknown, wasm-bindgen --target web, wasm-opt when it is installed,
# and web/index.html. Installs the Rust target and wasm-bindgen-cli (the version Cargo.lock
# pins) when they are missing.
#
# Environment: WASM_TARGET_DIR (default target/wasm) keeps the wasm build apart from the
# native one; WASM_OPT=0 skips wasm-opt; WASM_OPT_BIN picks the wasm-opt to run.
set -euo pipefail
cd "$(dirname "$0")/.."

wasm_target_dir="${WASM_TARGET_DIR:-target/wasm}"
out=web/dist

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
if [ -z "$bindgen_version" ]; then
    echo "error: no wasm-bindgen in Cargo.lock" >&2
    exit 1
fi
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $bindgen_version"; then
    echo "installing wasm-bindgen-cli $bindgen_version"
    # --locked first; a registry mirror that lacks one of its pinned dependencies needs the
    # unlocked resolution.
    cargo install --locked wasm-bindgen-cli --version "$bindgen_version" ||
        cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

t0=$(date +%s)
CARGO_TARGET_DIR="$wasm_target_dir" cargo build --release --target wasm32-unknown-unknown --bin attnscope
echo "cargo build (wasm32, release): $(($(date +%s) - t0)) s"

rm -rf "$out"
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" --out-name attnscope \
    "$wasm_target_dir/wasm32-unknown-unknown/release/attnscope.wasm"
wasm="$out/attnscope_bg.wasm"
raw_bytes=$(stat -c %s "$wasm")
echo "attnscope_bg.wasm after wasm-bindgen: $raw_bytes bytes ($((raw_bytes / 1024)) KiB)"

# binaryen 108 (Debian 12's wasm-opt) writes wasm-bindgen's externref table back as a table
# of functions and the page fails to start; 132 (npm's `binaryen`) is fine. WASM_OPT_BIN
# names another wasm-opt, e.g. node_modules/.bin/wasm-opt after `npm install binaryen`.
wasm_opt="${WASM_OPT_BIN:-wasm-opt}"
if [ "${WASM_OPT:-1}" = 0 ]; then
    echo "wasm-opt not run (WASM_OPT=0)"
elif ! command -v "$wasm_opt" >/dev/null; then
    echo "wasm-opt not run: none installed (npm install binaryen, then WASM_OPT_BIN=node_modules/.bin/wasm-opt)"
elif opt_version=$("$wasm_opt" --version | grep -oE '[0-9]+' | head -n 1) && [ "$opt_version" -le 108 ]; then
    echo "wasm-opt not run: $wasm_opt is binaryen $opt_version, which breaks the module (see above)"
else
    t0=$(date +%s)
    "$wasm_opt" -O2 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-mutable-globals --enable-reference-types --enable-multivalue \
        "$wasm" -o "$wasm.opt"
    mv "$wasm.opt" "$wasm"
    opt_bytes=$(stat -c %s "$wasm")
    echo "attnscope_bg.wasm after wasm-opt -O2 (binaryen $opt_version): $opt_bytes bytes ($((opt_bytes / 1024)) KiB, $(($(date +%s) - t0)) s)"
fi

cp web/index.html "$out/index.html"
echo "wrote $out/: $(ls "$out" | tr '\n' ' ')"
echo "serve it with: python3 -m http.server --bind 127.0.0.1 8000 --directory $out"
