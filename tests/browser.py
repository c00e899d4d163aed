"""Headless Chromium driven over the DevTools protocol (no Selenium, no extra package: aiohttp,
which the web console already needs, speaks the WebSocket).

The console's page draws the terminal on a canvas (xterm.js), so its text is not in the DOM. A
script installed before the page's own catches the xterm ``Terminal`` the page creates (it is
assigned to a ``terminal`` property), and :meth:`Browser.screen_text` reads the lines xterm
holds: exactly what the page shows.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import terminate

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, 'terminal', {configurable: true, set(value) {
  window.__terminal = value;
  Object.defineProperty(this, 'terminal', {value, writable: true, configurable: true, enumerable: true});
}});
"""
SCREEN_TEXT = """(() => {
  const t = window.__terminal; if (!t) return '';
  const b = t.buffer.active, lines = [];
  for (let y = 0; y < b.length; y++) lines.push(b.getLine(y).translateToString(true));
  return lines.join('\\n');
})()"""


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with a fresh profile, and one page, for use inside ``asyncio.run``."""

    def __init__(self, binary: str, log_dir: Path):
        self.profile = Path(tempfile.mkdtemp(prefix="symphony-chromium-"))
        self.log = open(log_dir / "chromium.log", "wb")
        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}",
                                         "--remote-debugging-port=0", "--window-size=1400,900", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=self.log)
        self._session: aiohttp.ClientSession | None = None
        self._ws: Any = None
        self._id = 0

    async def open(self, timeout: float = 60.0) -> "Browser":
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"chromium did not start (exit {self.process.poll()}); see {self.log.name}")
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json") as response:
            pages = [p for p in await response.json() if p["type"] == "page"]
        self._ws = await self._session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Page.enable")
        await self.call("Page.addScriptToEvaluateOnNewDocument", source=CATCH_TERMINAL)
        return self

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        wanted = self._id
        await self._ws.send_json({"id": wanted, "method": method, "params": params})
        while True:
            message = await self._ws.receive_json(timeout=60)
            if message.get("id") == wanted:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def screen_text(self) -> str:
        return await self.evaluate(SCREEN_TEXT) or ""

    async def wait_for_text(self, *needles: str, gone: tuple[str, ...] = (), timeout: float = 90.0) -> str:
        """The page's text once it shows every one of ``needles`` and none of ``gone``."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = await self.screen_text()
            if all(n in text for n in needles) and not any(g in text for g in gone):
                return text
            await asyncio.sleep(0.25)
        raise AssertionError(f"the page never showed {needles} without {gone}; it shows:\n{text}")

    async def click(self, x: int, y: int) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    async def press(self, key: str, code: str, key_code: int, text: str | None = None) -> None:
        """A key as a person types it: down (with its text), up."""
        await self.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=code, windowsVirtualKeyCode=key_code,
                        **({"text": text} if text else {}))
        await self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code, windowsVirtualKeyCode=key_code)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        terminate(self.process, 15)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
