"""Drive headless Chromium from tests, with no Python dependency beyond the standard library.

Chromium is started with ``--remote-debugging-pipe``: it speaks the DevTools protocol (CDP) as
NUL-terminated JSON messages, reading commands on file descriptor 3 and writing replies and
events on descriptor 4 — no websocket, no port, no network. A page opened with
:meth:`Chromium.open` records every uncaught exception, ``console.error``/``console.assert``
and browser log entry of level "error" in :attr:`Page.errors`; :meth:`Page.broken_images`
lists the ``<img>`` elements that did not decode; :meth:`Page.click` sends a real mouse click.

    with Chromium() as browser:
        report = check_page(browser, "report.html", screenshot="shot.png")
        assert report.ok, report
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars"]


def find_chromium() -> str | None:
    """Path of the Chromium binary (``/usr/bin/chromium`` or ``$HRCAM_CHROMIUM``), or None."""
    path = os.environ.get("HRCAM_CHROMIUM", CHROMIUM)
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def chromium_or_skip() -> str:
    """For tests: Chromium's path; skips the test when it is missing, fails instead under
    ``HRCAM_REQUIRE_BROWSER=1`` (``make test-browser``, ``.ci/run``)."""
    import pytest

    path = find_chromium()
    if path is None:
        if os.environ.get("HRCAM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"HRCAM_REQUIRE_BROWSER=1 but {CHROMIUM} is missing: run `bash .ci/install-browser`")
        pytest.skip(f"headless Chromium is not installed ({CHROMIUM}): run `bash .ci/install-browser`, "
                    "or `make test-browser`")
    return path


class BrowserError(RuntimeError):
    """Chromium did not start, died, timed out or answered a command with an error."""


class Chromium:
    """One headless Chromium process, talked to over the DevTools pipe; a context manager."""

    def __init__(self, binary: str | None = None, timeout: float = 30.0):
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise BrowserError(f"Chromium not found at {CHROMIUM}; run `bash .ci/install-browser`")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="hrcam-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def _fds():  # in the child: its CDP input on fd 3, output on fd 4
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [self.binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, preexec_fn=_fds,
            close_fds=False)  # Python's own descriptors are non-inheritable (PEP 446)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf, self._next_id, self.events = b"", 0, []
        self.call("Browser.getVersion")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Stop Chromium and remove its temporary profile."""
        if self.proc.poll() is None:
            try:
                self._send("Browser.close")
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def stderr(self) -> str:
        """What Chromium printed so far (for error messages)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        return self._next_id

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_child], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the pipe:\n{self.stderr()}")
                self._buf += chunk
            elif self.proc.poll() is not None:
                raise BrowserError(f"Chromium exited ({self.proc.returncode}):\n{self.stderr()}")
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one CDP command and return its result; events that arrive meanwhile are kept."""
        want = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._read(deadline)
            if msg.get("id") == want:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, session: str | None = None) -> dict:
        """Block until an event ``method`` (of ``session``) arrives; returns it."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == method and (session is None or ev.get("sessionId") == session):
                    return self.events.pop(i)
            msg = self._read(deadline)
            if "method" in msg:
                self.events.append(msg)

    def open(self, path, width: int = 1280, height: int = 900) -> "Page":
        """Open a local file (as a ``file://`` URL) or a URL in a new tab; returns once loaded."""
        url = path if "://" in str(path) else Path(path).resolve().as_uri()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        nav = self.call("Page.navigate", {"url": url}, session)
        if nav.get("errorText"):
            raise BrowserError(f"cannot open {url}: {nav['errorText']}")
        self.wait_event("Page.loadEventFired", session)
        page.evaluate("Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))",
                      await_promise=True)
        return page


class Page:
    """One tab: evaluate JavaScript, click, screenshot; :attr:`errors` as they happen."""

    def __init__(self, browser: Chromium, session: str):
        self.browser, self.session = browser, session

    @property
    def errors(self) -> list[str]:
        """Uncaught exceptions, console errors/assertions and error-level log entries so far."""
        out = []
        for ev in self.browser.events:
            if ev.get("sessionId") != self.session:
                continue
            p = ev.get("params", {})
            if ev["method"] == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append("exception: " + d.get("exception", {}).get("description", d.get("text", "")))
            elif ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                        for a in p.get("args", [])))
            elif ev["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log ({p['entry'].get('source')}): {p['entry'].get('text')}")
        return out

    def evaluate(self, expression: str, await_promise: bool = False):
        """The value of a JavaScript expression in the page (JSON-serializable results)."""
        r = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                   "awaitPromise": await_promise}, self.session)
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression!r} threw: {r['exceptionDetails'].get('exception', {})}")
        return r["result"].get("value")

    def images(self) -> list[dict]:
        """Every ``<img>``: its ``src`` (first 60 characters), ``complete`` and ``naturalWidth``."""
        return self.evaluate("Array.from(document.images).map(i => ({src: i.src.slice(0, 60), "
                             "complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))")

    def broken_images(self) -> list[str]:
        """``src`` prefixes of the images that are not ``complete && naturalWidth > 0``."""
        return [i["src"] for i in self.images() if not (i["complete"] and i["width"] > 0)]

    def click(self, selector: str) -> None:
        """A real left click (mouse events) in the middle of the first element matching ``selector``."""
        xy = self.evaluate(f"(e => {{ if (!e) return null; e.scrollIntoView({{block: 'center'}}); "
                           f"const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})"
                           f"(document.querySelector({json.dumps(selector)}))")
        if xy is None:
            raise BrowserError(f"no element matches {selector!r}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.browser.call("Input.dispatchMouseEvent",
                              {"type": kind, "x": xy[0], "y": xy[1], "button": "left", "clickCount": 1},
                              self.session)

    def screenshot(self, path, full_page: bool = True) -> Path:
        """Save a PNG screenshot (the whole page, up to 8000 px tall, when ``full_page``)."""
        params = {"format": "png"}
        if full_page:
            size = self.browser.call("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1})
        data = self.browser.call("Page.captureScreenshot", params, self.session)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path


@dataclass
class PageReport:
    """What :func:`check_page` found: image count, broken images and JavaScript/console errors."""

    images: int
    broken_images: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken_images and not self.errors


def check_page(browser: Chromium, path, screenshot=None) -> PageReport:
    """Open ``path``, check that every image rendered and nothing raised; optionally screenshot."""
    page = browser.open(path)
    if screenshot is not None:
        page.screenshot(screenshot)
    return PageReport(len(page.images()), page.broken_images(), page.errors)
