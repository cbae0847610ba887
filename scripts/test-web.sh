#!/usr/bin/env bash
# Serves web/dist/ (from scripts/build-web.sh) on 127.0.0.1 and checks it in headless
# Chromium with scripts/web_check.py: the seed's masks are drawn right, a key press changes
# the view, nothing panics; prints the first-paint and redraw times. Installs Debian's
# chromium-headless-shell when no Chromium is found.
#
# Usage: scripts/test-web.sh [SCREENSHOT.png]   (saves the first screenshot there)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f web/dist/index.html ] || [ ! -f web/dist/attnscope_bg.wasm ]; then
    echo "error: web/dist/ is not built; run scripts/build-web.sh first" >&2
    exit 2
fi

find_chromium() {
    for exe in chromium-headless-shell chromium chromium-browser google-chrome; do
        if command -v "$exe" >/dev/null; then
            command -v "$exe"
            return 0
        fi
    done
    # Debian puts the headless shell outside PATH on some releases.
    for exe in /usr/lib/chromium/chromium-headless-shell /usr/lib/chromium/chromium; do
        if [ -x "$exe" ]; then
            echo "$exe"
            return 0
        fi
    done
    return 1
}

if ! chromium=$(find_chromium); then
    echo "installing chromium-headless-shell"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium-headless-shell
    chromium=$(find_chromium)
fi
echo "browser: $chromium ($("$chromium" --version 2>/dev/null || echo "version unknown"))"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$port" --directory web/dist >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null; then
        break
    fi
    sleep 0.1
done

python3 scripts/web_check.py "http://127.0.0.1:$port/index.html" "$chromium" "${1:-}"
