"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``), with
the standard library only: the report tests and benchmarks/report.py load a page from a file:// URL
and read what a person would see (console messages, whether each image decoded, a screenshot, the
load time). CI installs Debian's ``chromium`` package; without it the browser tests skip.

The pipe: Chromium reads commands on fd 3 and writes replies and events on fd 4, each one JSON
message ended by a NUL byte.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WAIT_S = 60.0  # a cold start on a busy 2-core machine; a page itself loads in well under a second
IMAGES_STATE = "JSON.stringify(Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]))"
FIRST_FREE_FD = 10  # above 3 and 4, so the copies never land where they are going
LINKS_STATE = "JSON.stringify(Array.from(document.querySelectorAll('section')).map(s => s.id))"


def find_chromium() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


@dataclass
class PageLoad:
    console: list[str] = field(default_factory=list)  # console messages and log entries: "level: text"
    images: list[tuple[bool, int, int]] = field(default_factory=list)  # complete, natural width, height
    sections: list[str] = field(default_factory=list)
    screenshot: bytes = b""  # PNG of the top of the page
    load_s: float = 0.0  # navigation start to the load event, as the page's performance timing says
    wall_s: float = 0.0  # navigate command to the load event, seen from here

    @property
    def errors(self) -> list[str]:
        return [line for line in self.console if line.startswith(("error", "warning"))]


def _browser_fds(commands: int, replies: int) -> None:
    """In the browser's process, before exec: its fd 3 reads our commands, its fd 4 writes replies."""
    high = FIRST_FREE_FD
    commands, replies = fcntl.fcntl(commands, fcntl.F_DUPFD, high), fcntl.fcntl(replies, fcntl.F_DUPFD, high)
    os.dup2(commands, 3)  # dup2 onto another number always makes the copy inheritable
    os.dup2(replies, 4)


class _Pipe:
    def __init__(self, browser: str, width: int, height: int) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="yolor-chromium-")
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        arguments = [
            browser,
            "--headless=new",
            "--remote-debugging-pipe",
            "--no-sandbox",  # CI containers run as root, where the sandbox cannot start
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--user-data-dir={self.profile.name}",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            arguments,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,  # Python's own descriptors are not inheritable; dup2 makes fds 3 and 4 so
            preexec_fn=lambda: _browser_fds(to_browser, from_browser),
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for index, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(index)
        while True:
            event = self._receive()
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("Chromium stopped answering")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def close(self) -> None:
        try:
            os.write(self._write, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        for fd in (self._write, self._read):
            os.close(fd)
        self.profile.cleanup()


def _console_line(event: dict[str, Any]) -> str | None:
    params = event.get("params", {})
    if event.get("method") == "Runtime.consoleAPICalled":
        text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
        return f"{params.get('type', 'log')}: {text}"
    if event.get("method") == "Runtime.exceptionThrown":
        return f"error: {params.get('exceptionDetails', {}).get('text', 'exception')}"
    if event.get("method") == "Log.entryAdded":
        entry = params.get("entry", {})
        return f"{entry.get('level', 'info')}: {entry.get('text', '')}"
    return None


def load_page(path: Path, *, browser: str | None = None, width: int = 1280, height: int = 1600) -> PageLoad:
    """Open ``path`` from a file:// URL in a fresh headless Chromium and report what it showed."""
    browser = browser or find_chromium()
    if browser is None:
        raise FileNotFoundError("no chromium on PATH")
    pipe = _Pipe(browser, width, height)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            pipe.send(f"{domain}.enable", session=session)
        started = time.perf_counter()
        pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        pipe.wait_for("Page.loadEventFired")
        result = PageLoad(wall_s=time.perf_counter() - started)

        def evaluate(expression: str) -> Any:
            reply = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
            return reply["result"]["value"]

        timing = evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0].toJSON())")
        result.load_s = json.loads(timing)["loadEventEnd"] / 1000
        result.images = [tuple(item) for item in json.loads(evaluate(IMAGES_STATE))]
        result.sections = json.loads(evaluate(LINKS_STATE))
        shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session)
        result.screenshot = base64.b64decode(shot["data"])
        result.console = [line for event in pipe.events if (line := _console_line(event)) is not None]
        return result
    finally:
        pipe.close()
