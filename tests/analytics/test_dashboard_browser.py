"""The dashboard in headless Chromium, against a real server with auth on: the one-time link, choosing
a password, signing out and in, choosing an indicator and a period, opening a district; screenshots are
saved (to ``$TERMTEM_SCREENSHOTS`` when set, else the test's folder)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from fhir_server.dashboard.pages import indicators
from fhir_server.dashboard.users import UserRegistry
from fhir_server.storage.sqlite.store import SqliteStore
from tests.analytics.population import load_population
from tests.browser import PHONE, chromium
from tests.live import serve

PASSWORD = "kannika-2569-khet"


async def _prepare(path: Path) -> str:
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    # TERMTEM_SCREENSHOT_CHILDREN makes a bigger population for the README's screenshots.
    await load_population(store, seed=41, children=int(os.environ.get("TERMTEM_SCREENSHOT_CHILDREN", "150")))
    _, token = await UserRegistry(store).add(
        "kannika", "กรรณิกา ศรีสุข", "Organization/district-office", "committee"
    )
    await store.close()
    return token


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A server (auth on) over a store with a generated population and one committee member."""
    token = asyncio.run(_prepare(tmp_path / "store.sqlite"))
    env = {"TERMTEM_DATA_DIR": str(tmp_path / "data"), "TERMTEM_ANALYTICS_REFRESH_SECONDS": "1"}
    with serve(tmp_path / "store.sqlite", auth=True, env=env, host="localhost") as live:
        yield live.origin, f"{live.origin}/dashboard/welcome?user=kannika&token={token}"


def _shots() -> Path:
    folder = (
        Path(os.environ.get("TERMTEM_SCREENSHOTS", "")) if os.environ.get("TERMTEM_SCREENSHOTS") else None
    )
    return folder or Path.cwd()


def test_a_committee_member_signs_in_and_explores(server: tuple[str, str], tmp_path: Path) -> None:
    origin, link = server
    shots = Path(os.environ["TERMTEM_SCREENSHOTS"]) if os.environ.get("TERMTEM_SCREENSHOTS") else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    browser = chromium(1280, 1100)
    wait = WebDriverWait(browser, 90, poll_frequency=0.5)
    try:
        browser.get(f"{origin}/dashboard")
        assert "/dashboard/login" in browser.current_url  # nothing without signing in
        browser.get(link)
        browser.find_element(By.ID, "new-password").send_keys(PASSWORD)
        browser.find_element(By.ID, "again").send_keys(PASSWORD)
        browser.find_element(By.ID, "set-password").click()
        try:
            wait.until(
                lambda b: b.find_elements(By.ID, "district-map")
            )  # "preparing" reloads itself until ready
        except Exception:
            raise AssertionError(browser.current_url + " " + browser.page_source[:1500]) from None
        cookie = browser.get_cookie("termtem_session")
        assert cookie and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        # the link worked once only
        browser.find_element(By.ID, "logout").click()
        wait.until(lambda b: "/dashboard/login" in b.current_url)
        browser.get(link)
        assert browser.find_elements(By.CSS_SELECTOR, "p.error")
        browser.get(f"{origin}/dashboard/login")
        browser.find_element(By.ID, "username").send_keys("kannika")
        browser.find_element(By.ID, "password").send_keys("not the password")
        browser.find_element(By.ID, "sign-in").click()
        wait.until(lambda b: b.find_elements(By.ID, "login-error"))  # the form posts: a new page loads
        assert browser.find_element(By.ID, "login-error").is_displayed()
        browser.find_element(By.ID, "username").send_keys("kannika")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "sign-in").click()
        wait.until(lambda b: b.find_elements(By.ID, "district-map"))
        tiles = browser.find_elements(By.CSS_SELECTOR, "#district-map a.tile")
        assert len(tiles) == 50

        # choose a period and an indicator: the page is shown again for them
        Select(browser.find_element(By.ID, "period")).select_by_value("2025")
        wait.until(lambda b: "period=2025" in b.current_url)
        wasting = next(i for i in indicators() if i.key == "nutrition-status:wasting")
        Select(browser.find_element(By.ID, "indicator")).select_by_value(wasting.key)
        wait.until(lambda b: b.find_element(By.ID, "indicator-title").text == wasting.label("th"))
        assert "period=2025" in browser.current_url
        wait.until(lambda b: b.find_element(By.ID, "trend-chart").get_attribute("data-drawn") == "true")
        values = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#district-map text.value")]
        assert any(v == "<5" for v in values) or "TERMTEM_SCREENSHOT_CHILDREN" in os.environ  # withheld
        bangkok = browser.find_element(By.ID, "bangkok-value").text
        assert bangkok.endswith("%")
        browser.save_screenshot(str(shots / "dashboard-map.png"))

        # English is available
        browser.find_element(By.ID, "lang-switch").click()
        wait.until(lambda b: b.find_element(By.ID, "indicator-title").text == wasting.label("en"))

        # open the district with the most children in the table
        browser.find_element(By.CSS_SELECTOR, "#district-map a.tile[data-code='1011']").click()
        wait.until(lambda b: b.find_elements(By.ID, "district-name"))
        assert "Lat Krabang" in browser.find_element(By.ID, "district-name").text
        rows = browser.find_elements(By.CSS_SELECTOR, "#indicator-table tbody tr")
        assert len(rows) == len(indicators())
        lists = browser.find_elements(By.CSS_SELECTOR, "section.agencies")
        assert len(lists) == 3 and all(section.find_elements(By.TAG_NAME, "li") for section in lists)
        wait.until(lambda b: b.find_element(By.ID, "trend-chart").get_attribute("data-drawn") == "true")
        browser.save_screenshot(str(shots / "dashboard-district.png"))

        # on a phone: nothing wider than the screen
        browser.quit()
        browser = chromium(phone=True)
        browser.get(f"{origin}/dashboard/login")
        browser.find_element(By.ID, "username").send_keys("kannika")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "sign-in").click()
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.ID, "district-map"))
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
        browser.save_screenshot(str(shots / "dashboard-phone.png"))
    finally:
        browser.quit()
    for name in ("dashboard-map.png", "dashboard-district.png", "dashboard-phone.png"):
        assert (shots / name).stat().st_size > 10_000
