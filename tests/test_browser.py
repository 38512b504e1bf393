"""A real browser keeps its session while Redis servers die: headless Chromium on the notes app.

Debian's ``chromium`` and ``chromium-driver`` (``make browser`` installs them),
driven with selenium, log into examples/notes.py served by Hypercorn on trio
over three real redis-servers, add notes, and go on while one server is
killed (SIGKILL) and another frozen (SIGSTOP): every page still shows every
note under the same session cookie. Logout then forgets it. The test skips,
saying why, when no Chromium is installed.

Selenium blocks, so each browser step runs in a worker thread
(:func:`trio.to_thread.run_sync`) while the app serves on trio's thread.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from examples import notes
from tests.harness.helpers import FAST
from trio_redisha.testing import RedisServer

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

#: How long a form submission may take to load the next page (a frozen server
#: costs one deadline, on a loaded machine).
NAVIGATION_TIMEOUT = 15.0

T = TypeVar("T")


def find_chromium() -> tuple[str, str] | None:
    """Debian's Chromium and its driver, or None."""
    browser = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p is not None), None
    )
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    return (browser, driver) if browser and driver else None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium (selenium WebDriver); skips when none is installed."""
    found = find_chromium()
    if found is None:
        pytest.skip(
            "Chromium is not installed: run 'make browser' (as root it installs "
            "Debian's chromium and chromium-driver) or apt-get install them"
        )
    options = Options()
    options.binary_location = found[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=900,700",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(argument)
    # An explicit driver path: selenium never tries to download one.
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


@asynccontextmanager
async def running_notes(servers: list[RedisServer]) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(notes.serve, [s.url for s in servers], port=0, pool_options=FAST)
        )
        try:
            yield binds[0]
        finally:
            nursery.cancel_scope.cancel()


async def step(fn: Callable[[], T]) -> T:
    """Run one blocking browser step in a thread."""
    return await trio.to_thread.run_sync(fn)


def shown_notes(driver: Any) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#notes .note")]


def submit(driver: Any, button: Any) -> None:
    """Click a form's button and wait until the page it loads has replaced this one.

    Reading the page right after the click could read the old page, or an element
    of it that the navigation then removes (a stale element).
    """
    page = driver.find_element(By.TAG_NAME, "html")
    button.click()

    def replaced(_: Any) -> bool:
        try:
            page.is_enabled()
        except WebDriverException:  # stale, or Chromium's "does not belong to the document"
            return True
        return False

    WebDriverWait(driver, NAVIGATION_TIMEOUT).until(replaced)


def add_note(driver: Any, text: str) -> list[str]:
    driver.find_element(By.ID, "text").send_keys(text)
    submit(driver, driver.find_element(By.ID, "add"))
    return shown_notes(driver)


def session_cookie(driver: Any) -> dict[str, Any] | None:
    cookie: dict[str, Any] | None = driver.get_cookie(notes.COOKIE_NAME)
    return cookie


async def test_browser_keeps_its_session_while_servers_die(
    redis_servers: list[RedisServer], browser: Any, tmp_path: Path
) -> None:
    async with running_notes(redis_servers) as base:
        await step(partial(browser.get, base + "/"))
        assert await step(lambda: browser.find_element(By.ID, "login").text) == "Log in"
        assert await step(partial(session_cookie, browser)) is None  # nothing stored yet

        def login() -> str:
            browser.find_element(By.ID, "name").send_keys("ada")
            submit(browser, browser.find_element(By.ID, "login"))
            text: str = browser.find_element(By.ID, "user").text
            return text

        assert await step(login) == "ada"
        cookie = await step(partial(session_cookie, browser))
        assert cookie is not None
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
        sid = cookie["value"]

        assert await step(partial(add_note, browser, "buy milk")) == ["buy milk"]
        assert await step(partial(add_note, browser, "<b>not bold</b>")) == [
            "buy milk",
            "<b>not bold</b>",  # escaped, shown as text
        ]

        await redis_servers[0].akill()
        assert await step(partial(add_note, browser, "after the kill")) == [
            "buy milk",
            "<b>not bold</b>",
            "after the kill",
        ]
        await redis_servers[1].afreeze()
        try:
            expected = ["buy milk", "<b>not bold</b>", "after the kill", "while frozen"]
            assert await step(partial(add_note, browser, "while frozen")) == expected

            def delete_first() -> list[str]:
                submit(browser, browser.find_element(By.CSS_SELECTOR, "#notes button"))
                return shown_notes(browser)

            assert await step(delete_first) == expected[1:]
            await step(browser.refresh)
            assert await step(partial(shown_notes, browser)) == expected[1:]
            assert await step(lambda: browser.find_element(By.ID, "user").text) == "ada"
            await step(partial(browser.save_screenshot, str(tmp_path / "notes.png")))
            cookie = await step(partial(session_cookie, browser))
            assert cookie is not None and cookie["value"] == sid  # the same session
        finally:
            await redis_servers[1].athaw()

        def logout() -> str:
            submit(browser, browser.find_element(By.ID, "logout"))
            text: str = browser.find_element(By.ID, "login").text
            return text

        assert await step(logout) == "Log in"
        assert await step(partial(session_cookie, browser)) is None
