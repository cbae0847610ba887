#!/usr/bin/env python3
"""Opens the web build of attnscope in headless Chromium and checks it (scripts/test-web.sh).

Drives Chromium through the DevTools protocol over --remote-debugging-pipe (file
descriptors 3 and 4, NUL-separated JSON), so it needs nothing beyond the Python standard
library. Checks, on the page served at URL:

1. the app paints within FIRST_PAINT_LIMIT_S (the loading message is gone and the seed's
   masks are on screen);
2. the atrous and local maps of the seed (n = 64, k = 4, w = 3) show the right cells: each
   map is found by its colours and sampled at the centres of 1344 cells;
3. a key press changes the view ("]": stride 4 -> 5 moves the atrous diagonals);
   Ctrl+S downloads the mask as a 256 x 256 mask.png (saves are downloads in a browser);
4. the masks at n = 4096 redraw after a stride change (the app logs when they reach the
   screen and how long after the change; the first screenshot that differs is an upper bound
   including the capture time);
5. nothing panicked: no console error or uncaught exception.

Prints the measured times; exits 1 when a check fails. Writes the first screenshot to
SCREENSHOT when given.
"""

import base64
import fcntl
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

FIRST_PAINT_LIMIT_S = 10.0
# No task may hold the page longer than this at n = 4096 (README "Run it in a browser": jobs
# run in slices of about 30 ms between frames).
LONG_TASK_LIMIT_MS = 100
# Where the Scaling view's "to n" combo box, its entry 4096 and the "Run sweep" button are at
# WIDTH x HEIGHT (CSS pixels).
SWEEP_TO_AT = (504, 44)
SWEEP_TO_4096_AT = (482, 209)
RUN_SWEEP_AT = (717, 67)
WIDTH, HEIGHT = 1500, 940
# The colours of the Masks view (src/app/compute.rs): cells allowed by the atrous stride
# only, by the local window only, and by both.
ATROUS = (242, 142, 43)
LOCAL = (78, 154, 232)
BOTH = (235, 70, 150)


CLASSIFY_JS = """
(async () => {
  const img = new Image();
  img.src = "data:image/png;base64,%s";
  await img.decode();
  const c = new OffscreenCanvas(img.width, img.height);
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, img.width, img.height).data;
  const classes = %s;
  const out = new Array(img.height);
  for (let y = 0; y < img.height; y++) {
    let row = "";
    for (let x = 0; x < img.width; x++) {
      const i = 4 * (y * img.width + x);
      let ch = ".";
      for (const [name, [r, gr, b]] of classes) {
        if (Math.abs(d[i] - r) <= 24 && Math.abs(d[i + 1] - gr) <= 24 && Math.abs(d[i + 2] - b) <= 24) {
          ch = name;
          break;
        }
      }
      row += ch;
    }
    out[y] = row;
  }
  return out;
})()
"""


class Image:
    """A screenshot as rows of one letter per pixel: "a" atrous orange, "l" local blue,
    "m" both (magenta), "." anything else; decoded by the browser itself (no image library
    needed here)."""

    def __init__(self, browser, png):
        self.png = png
        classes = [["a", ATROUS], ["l", LOCAL], ["m", BOTH]]
        expr = CLASSIFY_JS % (base64.b64encode(png).decode(), json.dumps(classes))
        r = browser.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        self.rows = r["result"]["value"]
        self.h, self.w = len(self.rows), len(self.rows[0])

    def at(self, x, y):
        return self.rows[y][x]


def find_maps(img):
    """The mask maps on screen, left to right, as (x, y, height, width) boxes around their
    coloured cells (columns with coloured pixels, split where a gap of 12 px or more opens)."""
    cols = [0] * img.w
    for y in range(0, img.h, 2):
        row = img.rows[y]
        if row.count(".") == img.w:
            continue
        for x, ch in enumerate(row):
            if ch != ".":
                cols[x] += 1
    spans, x = [], 0
    while x < img.w:
        if cols[x] >= 8:
            start = x
            while x < img.w and any(c >= 8 for c in cols[x : x + 12]):
                x += 1
            spans.append((start, x))
        x += 1
    maps = []
    for x0, x1 in spans:
        ys = [y for y in range(img.h) if img.rows[y][x0:x1].strip(".")]
        if ys:
            x_lo = min(len(img.rows[y][x0:x1]) - len(img.rows[y][x0:x1].lstrip(".")) for y in ys)
            x_hi = max(len(img.rows[y][x0:x1].rstrip(".")) for y in ys)
            maps.append((x0 + x_lo, ys[0], ys[-1] - ys[0] + 1, x_hi - x_lo))
    return [m for m in maps if m[2] >= 64 and m[3] >= 64]


class Browser:
    def __init__(self, exe):
        r3, w3 = os.pipe()  # we write, Chromium reads fd 3
        r4, w4 = os.pipe()  # Chromium writes fd 4, we read
        flags = [
            "--headless",
            "--remote-debugging-pipe",
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--no-sandbox",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--window-size={WIDTH},{HEIGHT}",
            "about:blank",
        ]

        def fds():
            # Chromium reads commands on fd 3 and writes replies on fd 4; move the pipe ends
            # out of the way first so that neither overwrites the other.
            high_r, high_w = fcntl.fcntl(r3, fcntl.F_DUPFD, 10), fcntl.fcntl(w4, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [exe] + flags,
            preexec_fn=fds,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(r3)
        os.close(w4)
        self.out = os.fdopen(w3, "wb", buffering=0)
        self.inp = os.fdopen(r4, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def _read(self):
        while b"\0" not in self.buf:
            chunk = self.inp.read(1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=True, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session and self.session:
            msg["sessionId"] = self.session
        self.out.write(json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r.get("result", {}).get("value")

    def screenshot(self, clip=None):
        params = {"format": "png"}
        if clip:
            x, y, w, h = clip
            params["clip"] = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
        data = self.call("Page.captureScreenshot", **params)["data"]
        return base64.b64decode(data)

    def key(self, key, code, text, modifiers=0):
        for kind in ("keyDown", "keyUp"):
            params = {"type": kind, "key": key, "code": code, "modifiers": modifiers}
            if kind == "keyDown" and text:
                params["text"] = text
            self.call("Input.dispatchKeyEvent", **params)

    def console(self):
        """The page's console.log lines so far."""
        return [
            " ".join(str(a.get("value", "")) for a in m["params"].get("args", []))
            for m in self.events
            if m.get("method") == "Runtime.consoleAPICalled" and m["params"].get("type") == "log"
        ]

    def problems(self):
        """Console errors, uncaught exceptions and panics seen so far."""
        found = []
        for m in self.events:
            method, p = m.get("method"), m.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(p.get("exceptionDetails", {}))[:400])
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                if p.get("type") == "error" or "panicked" in text:
                    found.append(text[:400])
            elif method == "Log.entryAdded":
                e = p.get("entry", {})
                if e.get("level") == "error" and "favicon" not in e.get("url", "") + e.get("text", ""):
                    found.append(e.get("text", "")[:400])
        return found

    def close(self):
        try:
            self.call("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def check_seed_maps(img, stride, failures, what):
    """The atrous and local maps of n = 64, w = 3 at `stride`, sampled at cell centres."""
    maps = find_maps(img)
    if len(maps) < 2:
        failures.append(f"{what}: found {len(maps)} mask maps on screen, expected at least 2")
        return None
    wrong = []
    for (x, y, h, w), colour, allowed in (
        # docs/contract.md section 1 (not causal): atrous |i - j| mod k == 0; local |i - j| <= w.
        (maps[0], "a", lambda i, j: abs(i - j) % stride == 0),
        (maps[1], "l", lambda i, j: abs(i - j) <= 3),
    ):
        bad = 0
        for i in range(0, 64, 3):
            for j in range(64):
                px = img.at(int(x + (j + 0.5) * w / 64.0), int(y + (i + 0.5) * h / 64.0))
                bad += (px == colour) != allowed(i, j)
        if bad:
            wrong.append(f"{bad} cells of the {'atrous' if colour == 'a' else 'local'} map")
    if wrong:
        failures.append(f"{what}: wrong colour at " + ", ".join(wrong) + " (of 1344 sampled each)")
    return maps


def wait_log(b, needle, since, timeout):
    """The first console line after the first `since` ones that holds `needle`, waiting up to
    `timeout` seconds; None when none came."""
    t0 = time.monotonic()
    while True:
        b.call("Runtime.evaluate", expression="0")  # collect the app's console lines
        hits = [line for line in b.console()[since:] if needle in line]
        if hits:
            return hits[0]
        if time.monotonic() - t0 >= timeout:
            return None
        time.sleep(0.1)


def phase(b, name, act, needles, timeout, failures, wait_s=0.3):
    """Runs `act`, waits for the app's console lines holding each of `needles` (a job done),
    then `wait_s` more, and checks the long tasks seen meanwhile: none may exceed
    LONG_TASK_LIMIT_MS. Prints the long tasks and the app's slices that held the page over
    50 ms; returns the lines found (None for a missing one)."""
    b.eval("window.__long = []")
    since = len(b.console())
    act()
    found = [wait_log(b, needle, since, timeout) for needle in needles]
    time.sleep(wait_s)
    long_ms = json.loads(b.eval("JSON.stringify(window.__long || [])"))
    b.call("Runtime.evaluate", expression="0")
    lines = b.console()[since:]
    slices = [line.split("of ", 1)[-1] for line in lines if "held the page" in line]
    jobs = [line.replace("attnscope: ", "") for line in lines if " done in " in line]
    print(f"{name}: long tasks (ms, > 50 each) {long_ms or 'none'}; max {max(long_ms, default=0)} ms")
    for j in jobs:
        print(f"  {j}")
    if slices:
        print(f"  slices over 50 ms: {'; '.join(slices)}")
    for needle, line in zip(needles, found):
        if line is None:
            failures.append(f"{name}: no '{needle}' in the console within {timeout} s")
    if long_ms and max(long_ms) > LONG_TASK_LIMIT_MS:
        failures.append(f"{name}: the page was held {max(long_ms)} ms at once "
                        f"(long tasks {long_ms}), more than {LONG_TASK_LIMIT_MS} ms")
    return found


def main():
    url, exe = sys.argv[1], sys.argv[2]
    shot_path = sys.argv[3] if len(sys.argv) > 3 else None
    failures = []
    downloads = tempfile.mkdtemp(prefix="attnscope-web-")
    b = Browser(exe)
    try:
        b.call("Browser.setDownloadBehavior", session=False, behavior="allow", downloadPath=downloads)
        target = b.call("Target.createTarget", session=False, url="about:blank")["targetId"]
        b.session = b.call("Target.attachToTarget", session=False, targetId=target, flatten=True)["sessionId"]
        for m in ("Runtime.enable", "Log.enable", "Page.enable"):
            b.call(m)
        b.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
        # Long tasks (> 50 ms on the page's thread), to report how long the page was held.
        b.call(
            "Page.addScriptToEvaluateOnNewDocument",
            source="window.__long = []; new PerformanceObserver((l) => l.getEntries().forEach("
            "(e) => window.__long.push(Math.round(e.duration)))).observe({type: 'longtask', buffered: true});",
        )
        t0 = time.monotonic()
        b.call("Page.navigate", url=url)
        first_paint = None
        img = None
        while time.monotonic() - t0 < 60:
            if b.eval("document.getElementById('attnscope_loading') === null"):
                png = b.screenshot()
                img = Image(b, png)
                if find_maps(img):
                    first_paint = time.monotonic() - t0
                    break
            time.sleep(0.05)
        if first_paint is None:
            failures.append("the app did not paint the masks within 60 s")
            if shot_path:
                with open(shot_path, "wb") as f:
                    f.write(b.screenshot())
            text = b.eval("(document.getElementById('attnscope_loading') || {}).textContent")
            if text:
                failures.append(f"page says: {text}")
        else:
            print(f"first paint (navigate -> masks on screen): {first_paint:.2f} s")
            if first_paint > FIRST_PAINT_LIMIT_S:
                failures.append(f"first paint took {first_paint:.1f} s, more than {FIRST_PAINT_LIMIT_S} s")
            if shot_path:
                with open(shot_path, "wb") as f:
                    f.write(png)
            maps = check_seed_maps(img, 4, failures, "seed masks (k = 4)")
            if maps:
                print(f"maps found at {[(x, y, w) for x, y, _, w in maps]} (x, y, width in px)")
                # A small corner of the atrous map: quick to capture while timing the redraw.
                atrous_clip = (maps[0][0], maps[0][1], 48, 48)
            else:
                atrous_clip = None
            # Interaction: "]" raises the stride to 5; the atrous map must follow.
            b.call("Runtime.evaluate", expression="document.getElementById('attnscope_canvas').focus()")
            b.key("]", "BracketRight", "]")
            t1 = time.monotonic()
            changed = False
            while time.monotonic() - t1 < 10:
                shot = b.screenshot()
                if shot != png:
                    time.sleep(0.3)
                    after = Image(b, b.screenshot())
                    changed = True
                    break
                time.sleep(0.05)
            if not changed:
                failures.append("the key ']' did not change the view")
            else:
                check_seed_maps(after, 5, failures, "after ']' (k = 5)")
            # An export is a browser download: Ctrl+S saves the selected mask (sparse, n = 64,
            # 4 px per cell) as mask.png.
            b.key("s", "KeyS", "", modifiers=2)
            saved = os.path.join(downloads, "mask.png")
            for _ in range(100):
                if os.path.exists(saved):
                    break
                time.sleep(0.1)
            if not os.path.exists(saved):
                failures.append("Ctrl+S did not download mask.png")
            else:
                time.sleep(0.3)
                with open(saved, "rb") as f:
                    head = f.read(24)
                size = struct.unpack(">II", head[16:24]) if head[:8] == b"\x89PNG\r\n\x1a\n" else None
                if size != (256, 256):
                    failures.append(f"the downloaded mask.png is not a 256 x 256 PNG ({head[:24]!r})")
                else:
                    print("Ctrl+S downloaded mask.png (256 x 256)")
            # Redraw at n = 4096: PageUp doubles n (64 -> 4096 in six presses), then time "]".
            # One press per frame: egui takes one PageUp per frame.
            def grow():
                for _ in range(6):
                    b.key("PageUp", "PageUp", "")
                    time.sleep(0.5)

            phase(b, "growing n to 4096", grow, ["masks on screen"], 20, failures, wait_s=3.0)
            redraw = None

            def stride():
                nonlocal redraw
                before = b.screenshot(atrous_clip)
                b.key("]", "BracketRight", "]")
                t2 = time.monotonic()
                while time.monotonic() - t2 < 10:
                    if b.screenshot(atrous_clip) != before:
                        redraw = time.monotonic() - t2
                        break

            shown = phase(b, "masks after a stride change", stride, ["masks on screen"], 10, failures)
            if redraw is None:
                failures.append("the masks at n = 4096 did not redraw within 10 s of ']'")
            else:
                print(f"  masks at n = 4096 after the stride change: {shown[0] or 'no timing logged'}; "
                      f"first differing screenshot {redraw * 1000:.0f} ms after the key press")
            if shot_path:
                with open(shot_path.replace(".png", "-4096.png"), "wb") as f:
                    f.write(b.screenshot())

            # Frames with no job running: the pointer moving over the atrous map at n = 4096
            # (each move repaints the view with the hover inspector).
            def hover():
                x0, y0 = maps[0][0], maps[0][1]
                for t in range(30):
                    b.call("Input.dispatchMouseEvent", type="mouseMoved", x=x0 + 10 + 9 * t, y=y0 + 10 + 7 * t)
                    time.sleep(0.05)

            if maps:
                phase(b, "frames with nothing running (hover)", hover, [], 0, failures, wait_s=0.5)
            # The receptive field at n = 4096: the heatmaps of 8 layers and the coverage curves.
            phase(b, "receptive field", lambda: b.key("4", "Digit4", "4"),
                  ["attnscope-reach-heat done", "attnscope-reach-curves done"], 30, failures)
            # A Kernels run at n = 4096 (starts 400 ms after the view opens).
            phase(b, "a Kernels run", lambda: b.key("2", "Digit2", "2"),
                  ["attnscope-bench done"], 60, failures)

            # A Scaling sweep of n = 256 ... 4096 (k = w = sqrt n): "to n" set to 4096 in its
            # combo box, then "Run sweep"; they sit at fixed places of the Scaling view's top
            # bar at this window size.
            def click(at):
                x, y = at
                b.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
                time.sleep(0.2)
                for kind in ("mousePressed", "mouseReleased"):
                    b.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
                time.sleep(0.5)

            def sweep():
                b.key("5", "Digit5", "5")
                time.sleep(1.0)
                click(SWEEP_TO_AT)
                click(SWEEP_TO_4096_AT)
                click(RUN_SWEEP_AT)

            done = phase(b, "a Scaling sweep (n = 256 ... 4096)", sweep, ["attnscope-sweep done"], 180, failures)
            if done[0] is None:
                failures.append(f"clicking Run sweep at {RUN_SWEEP_AT} started no sweep (did the Scaling view's layout change?)")
            if shot_path:
                with open(shot_path.replace(".png", "-sweep.png"), "wb") as f:
                    f.write(b.screenshot())

            # The Teach view at n = 4096: the coverage of its layers (a reach of up to 64 layers;
            # with k = 6 it is done in a slice or two, so no job line is waited for).
            phase(b, "the Teach view", lambda: b.key("6", "Digit6", "6"), [], 0, failures, wait_s=3.0)

            # The Attention view at its largest n in a browser (256): n halved four times.
            def attention():
                for _ in range(4):
                    b.key("PageDown", "PageDown", "")
                    time.sleep(0.5)
                b.key("3", "Digit3", "3")

            phase(b, "the Attention view at n = 256", attention, ["attnscope-attention done"], 60, failures)
        b.call("Runtime.evaluate", expression="0")  # collect late console events
        problems = b.problems()
        if problems:
            failures.append("console errors / panics: " + " | ".join(problems[:5]))
    finally:
        b.close()
        shutil.rmtree(downloads, ignore_errors=True)
    for f in failures:
        print(f"FAIL: {f}")
    if failures:
        sys.exit(1)
    print("web check passed")


if __name__ == "__main__":
    main()
