"""Headless Debian Chromium driven by Playwright (no browser download): for the report page."""

import contextlib
import shutil

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# this machine has no network: without these, Chromium keeps trying to reach Google's hosts
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium_page(width: int = 1100, height: int = 900):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
