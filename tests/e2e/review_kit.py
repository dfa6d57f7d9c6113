"""What the review page's browser test and ``scripts/review-screenshots.py`` share: the app
under uvicorn in a thread on a free port, and a headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` served on 127.0.0.1 in a thread; its base URL. Stopped on exit."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def browser_missing() -> str | None:
    """Why no browser test can run here, or None."""
    if not any(shutil.which(name) for name in CHROMIUM):
        return "no chromium (apt-get install chromium chromium-driver)"
    if shutil.which(DRIVER) is None:
        return "no chromedriver (apt-get install chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    binary = next(shutil.which(name) for name in CHROMIUM if shutil.which(name))
    options.binary_location = binary or ""
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def select_text(driver: Any, phrase: str) -> None:
    """Select the first occurrence of ``phrase`` in the note's text, as a mouse drag would."""
    driver.execute_script(
        """
        const phrase = arguments[0];
        const root = document.getElementById('note-text');
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        let node, nodes = [], text = '';
        while ((node = walker.nextNode())) { nodes.push([node, text.length]); text += node.data; }
        const at = text.indexOf(phrase);
        if (at < 0) throw new Error('phrase not in the note');
        const locate = (offset) => {
          for (const [n, start] of nodes) {
            if (offset <= start + n.data.length) return [n, offset - start];
          }
        };
        const range = document.createRange();
        range.setStart(...locate(at));
        range.setEnd(...locate(at + phrase.length));
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        document.dispatchEvent(new Event('selectionchange'));
        """,
        phrase,
    )
