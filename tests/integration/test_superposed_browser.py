"""End-to-end: a real headless Chromium types into the autocomplete page and sees drafts.

Needs Debian's ``chromium`` (``make test`` installs it when run as root with apt) and the
``playwright`` Python package (driver only; the system browser is used, nothing is
downloaded). Skips with the reason when either is missing.
"""

from __future__ import annotations

import shutil

import pytest
from tests.fixtures.superposed import serve_in_thread

from terse.superposed.server import ServerLimits

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")


@pytest.fixture(scope="module")
def server():
    with serve_in_thread("qwen2", ServerLimits()) as srv:
        yield srv


def test_typing_shows_drafts_and_tab_accepts(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    host, port = server.server_address[:2]
    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        except sync_api.Error as exc:
            pytest.skip(f"chromium does not start: {str(exc).splitlines()[0]}")
        try:
            page = browser.new_page()
            page.goto(f"http://{host}:{port}/")
            page.select_option("#num-drafts", "5")
            box = page.locator("#prompt")
            box.click()
            box.type("Hello wor", delay=30)  # keystrokes: debounced, stale requests aborted
            page.wait_for_function("document.querySelectorAll('#drafts li').length === 5", timeout=15_000)
            texts = page.locator("#drafts li .text").all_inner_texts()
            assert len(texts) == 5 and len(set(texts)) == 5
            assert "drafts in" in page.locator("#status").inner_text()
            assert "recent requests:" in page.locator("#history").inner_text()
            # Words shared with the first draft are muted; the rest of each draft is plain.
            shared = page.locator("#drafts li .same").all_inner_texts()
            assert shared[0] == "" and all(texts[i].startswith(shared[i]) for i in range(5))
            served = server.RequestHandlerClass.service.served
            assert 1 <= served < len("Hello wor")  # debounced: not one request per keystroke
            box.press("Tab")  # accept the first draft
            assert page.input_value("#prompt") == "Hello wor" + texts[0]
            # The page asks again for the longer text and shows new drafts.
            page.wait_for_function("document.querySelectorAll('#drafts li').length === 5", timeout=15_000)
            before = server.RequestHandlerClass.service.served
            page.select_option("#preset", "paper")  # another setting asks again
            page.wait_for_function("document.querySelector('#history').textContent.split('·').length >= 2",
                                   timeout=15_000)
            for _ in range(150):  # the new request may still be generating on a busy machine
                if server.RequestHandlerClass.service.served > before:
                    break
                page.wait_for_timeout(100)
            assert server.RequestHandlerClass.service.served > before
        finally:
            browser.close()
