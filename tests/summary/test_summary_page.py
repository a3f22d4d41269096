"""The printable page in a real browser: headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium) opens ``$summary?_format=html`` from a running server at phone width, and the
growth chart and the flower are there; a screenshot is saved."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.browser import PHONE, chromium
from tests.summary.support import FHIR_JSON, full_record, transaction
from tests.wellbeing.test_flower_scoring import flower


def _phone(browser: webdriver.Chrome, height: int) -> None:
    """A phone's viewport (width, mobile layout), whatever the window manager gave headless Chromium."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PHONE[0], "height": height, "deviceScaleFactor": 1, "mobile": True},
    )


def test_the_page_in_headless_chromium(live_server: str, tmp_path: Path) -> None:
    agencies, household, child = full_record()
    with httpx.Client(base_url=live_server + "/", timeout=60) as http:
        reply = http.post("", json=transaction([*agencies, *household]), headers=FHIR_JSON)
        assert reply.status_code == 200, reply.text[:2000]
        scored = flower(
            child["id"], {"family.care": "at-risk", "income": "watch", "education.learning": "crisis"}
        )
        scored["authored"] = "2099-01-01T09:00:00+07:00"  # the newest assessment
        assert http.post("QuestionnaireResponse", json=scored, headers=FHIR_JSON).status_code == 201
    url = f"{live_server}/Patient/{child['id']}/$summary?_format=html"
    browser = chromium(phone=True)
    try:
        browser.get(url)
        assert "สรุปข้อมูลเด็ก" in browser.title
        charts = browser.find_elements(By.CSS_SELECTOR, "svg.growth-chart")
        assert len(charts) == 2
        for chart in charts:
            assert len(chart.find_elements(By.CSS_SELECTOR, "path.who-curve")) == 5  # -3, -2, 0, +2, +3 SD
            assert chart.find_elements(By.CSS_SELECTOR, "circle.measurement")
            assert chart.size["width"] <= PHONE[0]  # fits a phone's width
        petals = browser.find_elements(By.CSS_SELECTOR, "svg.wellbeing-flower ellipse.petal")
        assert sorted(p.get_attribute("data-level") for p in petals) == ["at-risk", "crisis", "good", "watch"]
        assert browser.find_elements(By.CSS_SELECTOR, "section#immunization table")
        # The stylesheet was allowed by the page's Content-Security-Policy (its hash), so it applied.
        colour = browser.execute_script("return getComputedStyle(document.querySelector('h2')).color")
        assert colour == "rgb(31, 78, 156)"
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
        height = browser.execute_script("return document.documentElement.scrollHeight")
        _phone(browser, min(int(height), 16000))
        shot = tmp_path / "summary-page.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        keep = os.environ.get("TERMTEM_SUMMARY_SCREENSHOT")
        if keep:
            shutil.copy(shot, keep)
    finally:
        browser.quit()
