"""`avu predict`'s page in a real browser: headless Chromium (Debian's `chromium`, which
scripts/setup.sh installs where apt-get is there) opens index.html from file://, over the
Chrome DevTools protocol (tornado's websocket client, no browser download). The test takes a
screenshot and checks that the timeline and every overlay image rendered, that the slider
moves the frame, and that the console stayed free of errors. Skipped, saying so, where no
Chromium could be installed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

from .test_predict import clip25, run  # noqa: F401  (module fixtures: the tiny run and the 25 s clip)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1200,1600"]
SCREENSHOT = os.environ.get("AVU_PREDICT_SCREENSHOT")   # where to keep the screenshot (docs/predict.png)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine (scripts/setup.sh installs Debian's `chromium` where apt-get is "
                "available; it could not here): the page was not checked in a browser")


class Browser:
    """One headless Chromium and one page, driven over the DevTools protocol."""

    def __init__(self, binary: str):
        self.profile = tempfile.mkdtemp(prefix="avu-chromium-")
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                pytest.fail("Chromium started but opened no DevTools port within 30 s")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        self.ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self.events: list[dict] = []

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def visit(self, url: str, script: str) -> tuple[object, bytes]:
        """Open url, run `script` (an expression) once loaded; returns its value and a PNG."""
        return asyncio.run(self._visit(url, script))

    async def _visit(self, url: str, script: str) -> tuple[object, bytes]:
        from tornado.websocket import websocket_connect

        conn = await websocket_connect(self.ws_url, max_message_size=256 << 20)
        ids = iter(range(1, 10 ** 6))

        async def call(method: str, **params) -> dict:
            i = next(ids)
            await conn.write_message(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                msg = json.loads(await asyncio.wait_for(conn.read_message(), 60))
                if msg.get("id") == i:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})
                self.events.append(msg)

        for domain in ("Page", "Runtime", "Log"):
            await call(f"{domain}.enable")
        start = len(self.events)                 # events of earlier visits stay, for errors()
        await call("Page.navigate", url=url)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events[start:]):
            self.events.append(json.loads(await asyncio.wait_for(conn.read_message(), 60)))
        value = (await call("Runtime.evaluate", expression=script, returnByValue=True, awaitPromise=True))
        shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        conn.close()
        return value.get("result", {}).get("value"), base64.b64decode(shot["data"])

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(str(p.get("exceptionDetails", {}).get("exception", {}).get("description") or p))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out


CHECK = """(async () => {
  const imgs = Array.from(document.images);
  const rendered = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const svg = document.getElementById('timeline');
  const before = document.getElementById('when').textContent;
  const slider = document.getElementById('step');
  slider.value = slider.max; slider.dispatchEvent(new Event('input'));
  await Promise.all(imgs.map(i => i.decode()));                      // the last step's pictures decode too
  const last = {moved: document.getElementById('when').textContent !== before,
                when: document.getElementById('when').textContent,
                cursor: document.getElementById('cursor').getAttribute('x1')};
  slider.value = Math.floor(slider.max / 2); slider.dispatchEvent(new Event('input'));   // for the screenshot
  await Promise.all(imgs.map(i => i.decode()));
  return {images: imgs.length, rendered: rendered, ...last,
          overlays: document.querySelectorAll('img.overlay').length,
          svg_height: svg ? svg.getBoundingClientRect().height : 0,
          events: document.querySelectorAll('#timeline rect.event').length,
          levels: document.querySelectorAll('#timeline rect.level').length,
          qa: document.querySelectorAll('table td b').length};
})()"""


def test_the_page_renders_in_chromium(run, clip25, tmp_path):  # noqa: F811
    binary = chromium()
    out = tmp_path / "out"
    real = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "samples" / "ave" / "-67UNKFmRLk.mp4"
    videos = [str(clip25)] + ([str(real)] if real.is_file() else [])
    result = CliRunner().invoke(app, ["predict", str(run), *videos, "--out", str(out), "--device", "cpu",
                                      "--ask", "Is the violin playing?"])
    assert result.exit_code == 0, result.output
    browser = Browser(binary)
    try:
        value, png = browser.visit((out / "long25" / "index.html").resolve().as_uri(), CHECK)
        index_value, _ = browser.visit((out / "index.html").resolve().as_uri(),
                                       "document.querySelectorAll('a').length") if len(videos) > 1 else (1, b"")
        if SCREENSHOT and len(videos) > 1:      # the README's picture: the real clip's page
            _, shot = browser.visit((out / real.stem / "index.html").resolve().as_uri(), CHECK)
            Path(SCREENSHOT).write_bytes(shot)
    finally:
        browser.close()
    (tmp_path / "page.png").write_bytes(png)
    assert browser.errors() == []
    assert value["images"] == value["rendered"] == 5 and value["overlays"] == 4   # the frame + 4 overlays
    assert value["svg_height"] > 100 and value["levels"] >= 25 and value["qa"] == 1
    assert value["moved"] and value["when"].startswith("24.00-25.00 s") and float(value["cursor"]) > 900
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    assert index_value == len(videos)
