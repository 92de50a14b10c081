"""The check page in a real browser: type, submit, read the result, switch language, the
keyboard-only flow, the rate-limit page, and no JavaScript needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ceir.config import Settings
from ceir.web.app import WebFace
from tests._serving import serving
from tests.web import browser

pytestmark = pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))


def _base(running: Any) -> str:
    face = next(f for f in running.server.faces if isinstance(f, WebFace))
    return f"http://127.0.0.1:{face.port}"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser.chromium() as launched:
        yield launched


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with serving(Settings(db=tmp_path / "db", web="127.0.0.1:0")) as running:
        yield _base(running)


@pytest.fixture
def tab(chromium: Any) -> Iterator[Any]:
    """A phone-sized page; CSP violations and script errors are collected."""
    context = chromium.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    yield page
    context.close()


def test_type_submit_and_read_the_result(tab: Any, site: str) -> None:
    """A pasted *#06# screen is read, and the answer is shown as on the box, in words."""
    tab.goto(site + "/?lang=en")
    tab.get_by_label("IMEI (15 digits)").fill("*#06#\nIMEI: 352099001761481\nSV: 23")
    tab.get_by_role("button", name="Check").click()
    tab.wait_for_selector("#result")
    assert tab.locator("#result-title").inner_text().endswith("Registered")
    assert tab.locator("#result-imei").inner_text() == "35-209900-176148-1"
    assert tab.locator("#result-brand").inner_text() == "Nusantara"
    assert "works on Indonesian mobile networks" in tab.locator("#result").inner_text()
    assert tab.problems == []


def test_switch_language_keeps_the_imei(tab: Any, site: str) -> None:
    """The language link shows the same answer in Bahasa Indonesia, and back."""
    tab.goto(site + "/?lang=en&imei=352099001761499")
    assert "Blocked: reported lost or stolen" in tab.locator("#result-title").inner_text()
    tab.get_by_role("link", name="Bahasa Indonesia").click()
    tab.wait_for_load_state()
    assert tab.locator("html").get_attribute("lang") == "id"
    assert "Diblokir" in tab.locator("#result-title").inner_text()
    assert tab.get_by_label("IMEI (15 digit)").input_value() == "352099001761499"
    tab.get_by_role("link", name="English").click()
    tab.wait_for_load_state()
    assert tab.locator("html").get_attribute("lang") == "en"


def test_the_browser_language_is_the_default(chromium: Any, site: str) -> None:
    """A browser set to Indonesian gets the page in Bahasa Indonesia."""
    context = chromium.new_context(locale="id-ID")
    try:
        page = context.new_page()
        page.goto(site + "/")
        assert page.locator("h1").inner_text() == "Cek IMEI ponsel"
    finally:
        context.close()


def test_keyboard_only_flow(tab: Any, site: str) -> None:
    """Tab reaches skip link, language, input, button in that order; Enter submits; the
    invalid answer is announced and tied to the input."""
    tab.goto(site + "/?lang=en")
    order = []
    for _ in range(4):
        tab.keyboard.press("Tab")
        order.append(tab.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert order[0] == "A"  # the skip link comes first
    assert order[1:] == ["lang-id", "imei", "BUTTON"]
    tab.keyboard.press("Shift+Tab")
    tab.keyboard.type("35 209900 176148 2")
    tab.keyboard.press("Enter")
    tab.wait_for_selector("#imei-error")
    assert "it is 2, it should be 1" in tab.locator("#imei-error").inner_text()
    assert tab.locator("#imei").get_attribute("aria-invalid") == "true"
    assert "imei-error" in (tab.locator("#imei").get_attribute("aria-describedby") or "")
    outline = tab.evaluate(
        "(() => { const i = document.getElementById('imei'); i.focus();"
        " return getComputedStyle(i).outlineStyle; })()"
    )
    assert outline != "none", "focus must be visible"


def test_works_without_javascript(chromium: Any, site: str) -> None:
    """With JavaScript off the form still checks: the page needs none."""
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site + "/?lang=en")
        page.fill("#imei", "860123450000012")
        page.click("button")
        page.wait_for_selector("#result")
        assert "Temporarily registered until" in page.locator("#result-title").inner_text()
    finally:
        context.close()


def test_the_rate_limit_page_says_when_to_try_again(tab: Any, tmp_path: Path) -> None:
    """Past the DeviceCheck bucket the browser gets 429, Retry-After and the words."""
    settings = Settings(db=tmp_path / "db", web="127.0.0.1:0", consumer_rate=0.05, consumer_burst=1)
    with serving(settings) as running:
        base = _base(running)
        tab.goto(base + "/?lang=en&imei=352099001761481")
        assert tab.locator("#result").count() == 1
        tab.fill("#imei", "356868000041418")
        with tab.expect_response(lambda r: "imei=" in r.url) as caught:
            tab.click("button")
        response = caught.value
        assert response.status == 429
        assert int(response.headers["retry-after"]) >= 1
        notice = tab.locator("#notice").inner_text()
        assert "Too many checks" in notice
        assert "Please try again in" in notice
