"""Headless Chromium for page tests: Debian's chromium and chromium-driver, driven by Selenium."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)
PHONE = (412, 915)


def chromium(width: int = 1280, height: int = 1000, *, phone: bool = False) -> webdriver.Chrome:
    """A fresh headless browser (a phone's viewport with ``phone``); the caller quits it."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    w, h = PHONE if phone else (width, height)
    options.add_argument(f"--window-size={w},{h}")
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    if phone:
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": True},
        )
    return browser
