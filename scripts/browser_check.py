#!/usr/bin/env python3
"""Look at the built documentation site in a real browser (headless Chromium) at 1280x900.

    python scripts/browser_check.py [SITE_DIR] [--out SCREENSHOT_DIR]

SITE_DIR is a site already built by `mkdocs build` (default `site/`); this script builds
nothing.  It serves SITE_DIR on 127.0.0.1 (Python's http.server, in a thread), drives Debian's
headless Chromium (`/usr/bin/chromium`, or `$CHROMIUM`) through the DevTools protocol (a
websocket client written with the standard library below: no extra Python package), and for the
home page, the guides, the claims index and every claim page, the benchmarks page and the theory
pages (not the API reference):

- saves a screenshot of its first screen (`--full-page`: of the whole page; PNG, one per page)
  into SCREENSHOT_DIR (default `site-screenshots/`);
- checks that the math is typeset: no raw `$$`, `\\(` or `\\[` left in the rendered text
  outside code blocks, and MathJax output (`mjx-container`) present in every formula of
  the page (`.arithmatex`);
- checks that every `<img>` loaded (`naturalWidth > 0`);
- checks that the page itself does not overflow horizontally
  (`document.documentElement.scrollWidth <= window.innerWidth + 1`): wide tables and code
  blocks must scroll inside themselves or wrap.

It prints one line per page, `OK` or what failed, and exits 0 when every page passes, 1 when
any fails, 2 on a usage error (no such site), and 77 when Chromium is not installed (the check
is then skipped: install it with `apt-get install -y chromium`; it is never downloaded here).
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.client
import http.server
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SKIPPED = 77  # the exit code of a check that could not run (automake's convention)
WIDTH, HEIGHT = 1280, 900
PAGE_TIMEOUT = 60.0  # seconds for one page to load and typeset
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-allow-origins=*",
    f"--window-size={WIDTH},{HEIGHT}",
)

# Runs in the page once it has loaded: waits for MathJax and the fonts, then measures.
PROBE = r"""
(async () => {
  const M = window.MathJax;
  if (M && M.startup && M.startup.promise) { await M.startup.promise; }
  if (document.fonts && document.fonts.ready) { await document.fonts.ready; }
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "MJX-CONTAINER"]);
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let e = node.parentElement; e; e = e.parentElement) {
        if (skip.has(e.tagName)) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }
  });
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    for (const token of ["$$", "\\(", "\\["]) {
      const i = n.data.indexOf(token);
      if (i < 0) continue;
      const where = n.parentElement.closest(".md-nav--secondary") ? "table of contents"
        : n.parentElement.closest("nav, .md-sidebar") ? "navigation" : "page";
      raw.push(where + ": " + n.data.trim().replace(/\s+/g, " ").slice(0, 80));
    }
  }
  const formulas = [...document.querySelectorAll(".arithmatex")];
  const untypeset = formulas.filter(f => !f.querySelector("mjx-container")).length;
  const images = [...document.images].map(img => ({
    src: img.getAttribute("src"), ok: img.complete && img.naturalWidth > 0 }));
  const de = document.documentElement;
  const wide = [];
  if (de.scrollWidth > window.innerWidth + 1) {
    for (const e of document.querySelectorAll("body *")) {
      const r = e.getBoundingClientRect();
      if (r.right > window.innerWidth + 1 && r.width > 0 &&
          !(e.parentElement && e.parentElement.getBoundingClientRect().right > window.innerWidth + 1)) {
        wide.push(e.tagName.toLowerCase() + (e.className && typeof e.className === "string"
          ? "." + e.className.trim().split(/\s+/).join(".") : "") + " right=" + Math.round(r.right));
      }
      if (wide.length >= 5) break;
    }
  }
  return {
    title: document.title,
    raw: [...new Set(raw)].slice(0, 5),
    formulas: formulas.length,
    mjx: document.querySelectorAll("mjx-container").length,
    untypeset: untypeset,
    mathjaxError: document.querySelectorAll("mjx-merror, [data-mjx-error]").length,
    images: images,
    scrollWidth: de.scrollWidth,
    innerWidth: window.innerWidth,
    wide: wide,
  };
})()
"""


# ---- a minimal websocket client (RFC 6455), enough for the DevTools protocol ------------------
class WebSocket:
    """Text frames over a plain TCP socket to 127.0.0.1: masked client frames, no extensions."""

    def __init__(self, url: str, timeout: float) -> None:
        assert url.startswith("ws://"), url
        hostport, _, path = url[len("ws://") :].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the websocket handshake was cut off")
            head += chunk
        head, _, self.buffer = head.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ConnectionError(f"websocket handshake refused: {status.decode(errors='replace')}")

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                raise ConnectionError("the browser closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv(self) -> str:
        """The next complete text message (continuation frames joined; pings answered)."""
        message = b""
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            mask = self._read(4) if b1 & 0x80 else b""
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 0x8:
                raise ConnectionError("the browser closed the websocket")
            if opcode == 0x9:  # ping: answer with a pong of the same payload
                self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(data)) + b"\0" * 4 + data)
                continue
            if opcode in (0x0, 0x1, 0x2):
                message += data
                if b0 & 0x80:
                    return message.decode()

    def close(self) -> None:
        try:
            self.sock.sendall(struct.pack("!BB", 0x88, 0x80) + b"\0" * 4)
        except OSError:
            pass
        self.sock.close()


class DevTools:
    """One page target of Chromium, driven by DevTools protocol commands."""

    def __init__(self, ws_url: str) -> None:
        self.ws = WebSocket(ws_url, timeout=PAGE_TIMEOUT)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == name:
                    del self.events[: i + 1]
                    return True
            self.events.clear()
            if time.monotonic() > deadline:
                return False
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)


# ---- the site, served locally -----------------------------------------------------------------
class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def pages(site: Path, *, every: bool = False) -> list[str]:
    """URL paths of the pages to look at: the home page, the guides, the claims (their index and
    every claim page), the benchmarks and the theory pages; not the API reference unless
    `every`, which takes every page of the site."""
    if every:
        found = (p.parent.relative_to(site).as_posix() for p in site.rglob("*/index.html"))
        return [
            "/",
            *sorted(f"/{d}/" for d in found if d.split("/")[0] not in ("assets", "search")),
        ]
    sections = ("claims", "theory", "benchmarks", "api")
    out = ["/"]
    out += sorted(
        f"/{p.parent.name}/"
        for p in site.glob("*/index.html")
        if p.parent.name not in sections and p.parent.name not in ("assets", "search")
    )
    for section in ("claims", "benchmarks", "theory"):
        if (site / section / "index.html").exists():
            out.append(f"/{section}/")
        out += sorted(f"/{section}/{p.parent.name}/" for p in site.glob(f"{section}/*/index.html"))
    return out


# ---- Chromium ---------------------------------------------------------------------------------
def find_chromium() -> str | None:
    """`$CHROMIUM` when it is set (and then only it), else Debian's `/usr/bin/chromium`."""
    if "CHROMIUM" in os.environ:
        candidates: tuple[str | None, ...] = (os.environ["CHROMIUM"],)
    else:
        candidates = ("/usr/bin/chromium", shutil.which("chromium"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def start_chromium(exe: str, profile: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start Chromium with a fresh profile in `profile`; its DevTools port."""
    log = (profile.parent / f"{profile.name}.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            *CHROMIUM_FLAGS,
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = Path(log.name).read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(
                f"chromium exited at start-up with code {proc.returncode}: " + " / ".join(tail)
            )
        try:
            first = port_file.read_text().splitlines()[0]
            return proc, int(first)
        except (OSError, IndexError, ValueError):
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("chromium did not open its DevTools port within 30 s")


def devtools_json(port: int, path: str, method: str = "GET") -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def check_page(dt: DevTools, url: str, shot: Path, *, full_page: bool = False) -> list[str]:
    """Load `url`, screenshot it into `shot`, and return what failed (empty: the page is fine)."""
    nav = dt.call("Page.navigate", url=url)
    if nav.get("errorText"):
        return [f"not loaded: {nav['errorText']}"]
    if not dt.wait_event("Page.loadEventFired", PAGE_TIMEOUT):
        return [f"did not finish loading within {PAGE_TIMEOUT:.0f} s"]
    result = dt.call(
        "Runtime.evaluate",
        expression=PROBE,
        awaitPromise=True,
        returnByValue=True,
        timeout=PAGE_TIMEOUT * 1000,
    )
    if "exceptionDetails" in result:
        return [f"probe failed: {result['exceptionDetails'].get('text')}"]
    r = result["result"]["value"]
    shot_params: dict[str, Any] = {"format": "png"}
    if full_page:  # the whole page, not only its first screen
        size = dt.call("Page.getLayoutMetrics")["cssContentSize"]
        shot_params["clip"] = {"x": 0, "y": 0, "width": WIDTH, "height": size["height"], "scale": 1}
        shot_params["captureBeyondViewport"] = True
    png = dt.call("Page.captureScreenshot", **shot_params)["data"]
    shot.write_bytes(base64.b64decode(png))
    failures = []
    if r["title"].startswith("404"):
        failures.append("page not found")
    if r["raw"]:
        failures.append("raw TeX in the text: " + "; ".join(repr(s) for s in r["raw"]))
    if r["untypeset"]:
        failures.append(f"{r['untypeset']} of {r['formulas']} formulas not typeset by MathJax")
    if r["formulas"] and not r["mjx"]:
        failures.append("no MathJax output (mjx-container) on a page with math")
    if r["mathjaxError"]:
        failures.append(f"{r['mathjaxError']} MathJax error(s) in formulas")
    broken = [i["src"] for i in r["images"] if not i["ok"]]
    if broken:
        failures.append("images not loaded: " + ", ".join(broken))
    if r["scrollWidth"] > r["innerWidth"] + 1:
        failures.append(
            f"page overflows horizontally: scrollWidth {r['scrollWidth']} > "
            f"window {r['innerWidth']} ({', '.join(r['wide'])})"
        )
    return failures


def check_pages(port: int, http_port: int, site: Path, out: Path, args: argparse.Namespace) -> int:
    """Every page in one browser tab at 1280x900, one line each; the number that failed."""
    target = devtools_json(port, "/json/new?about:blank", method="PUT")
    dt = DevTools(target["webSocketDebuggerUrl"])
    dt.call("Page.enable")
    dt.call(
        "Emulation.setDeviceMetricsOverride",
        width=WIDTH,
        height=HEIGHT,
        deviceScaleFactor=1,
        mobile=False,
    )
    failed = 0
    for path in pages(site, every=args.all):
        name = path.strip("/").replace("/", "-") or "home"
        try:
            problems = check_page(
                dt,
                f"http://127.0.0.1:{http_port}{path}",
                out / f"{name}.png",
                full_page=args.full_page,
            )
        except (RuntimeError, OSError, ConnectionError) as exc:
            problems = [f"{type(exc).__name__}: {exc}"]
        failed += bool(problems)
        print(
            f"{path:<40} " + ("OK" if not problems else "FAIL: " + " | ".join(problems)),
            flush=True,
        )
    dt.ws.close()
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default="site", help="a built site (default: site/)")
    parser.add_argument("--out", default="site-screenshots", help="folder for the PNG screenshots")
    parser.add_argument(
        "--all", action="store_true", help="every page of the site, the API reference included"
    )
    parser.add_argument(
        "--full-page", action="store_true", help="screenshot whole pages, not their first screen"
    )
    args = parser.parse_args(argv)
    site, out = Path(args.site), Path(args.out)
    if not (site / "index.html").is_file():
        print(f"{site}/index.html not found: build the site first (mkdocs build -d {site})")
        return 2
    exe = find_chromium()
    if exe is None:
        print("chromium not installed: skipped (apt-get install -y chromium)")
        return SKIPPED
    out.mkdir(parents=True, exist_ok=True)
    server, http_port = serve(site)
    with tempfile.TemporaryDirectory(prefix="browser-check-") as tmp:
        try:
            proc, port = start_chromium(exe, Path(tmp) / "profile")
        except RuntimeError as exc:
            server.shutdown()
            print(f"chromium did not start: {exc}")
            return 1
        try:
            failed = check_pages(port, http_port, site, out, args)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            server.shutdown()
    total = len(pages(site, every=args.all))
    print(f"{total - failed} of {total} pages OK; screenshots ({WIDTH}x{HEIGHT}) in {out}/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
