"""The dashboard over HTTP with auth on: sign-in rules, cookies, CSRF, lockout, and pages that never
read the store (only the cached figures)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.analytics.service import analytics_of
from fhir_server.dashboard.users import UserRegistry
from tests.analytics.population import load_population
from tests.conftest import make_settings, running_app

ORIGIN = "https://dash.example"


async def _welcome(http: httpx.AsyncClient, username: str, token: str, password: str) -> httpx.Response:
    form = await http.get(f"/dashboard/welcome?user={username}&token={token}")
    assert form.status_code == 200, form.text
    return await http.post(
        "/dashboard/welcome",
        data={"user": username, "token": token, "password": password, "again": password},
        headers={"Origin": ORIGIN},
    )


async def test_sign_in_cookies_csrf_and_lockout(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth=True, data_dir=tmp_path / "data")
    async with running_app(settings) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            users = UserRegistry(app.state.store)
            _, token = await users.add("malee", "มาลี", "Organization/khet-1", "committee")
            assert (await http.get("/dashboard")).status_code == 303
            short = await _welcome(http, "malee", token, "short")
            assert short.status_code == 400
            signed = await _welcome(http, "malee", token, "a long enough password")
            assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"
            cookie = signed.headers["set-cookie"]
            assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
            assert (await http.get(f"/dashboard/welcome?user=malee&token={token}")).status_code == 410  # once

            # signing in: the form's CSRF cookie and field, and our own origin, are required
            http.cookies.clear()
            page = await http.get("/dashboard/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            good = {
                "username": "malee",
                "password": "a long enough password",
                "csrf": csrf,
                "next": "/dashboard",
            }
            assert (await http.post("/dashboard/login", data={**good, "csrf": "forged"})).status_code == 403
            other = await http.post("/dashboard/login", data=good, headers={"Origin": "https://evil.example"})
            assert other.status_code == 403
            assert (
                await http.post("/dashboard/login", data=good, headers={"Origin": ORIGIN})
            ).status_code == 303
            # an open redirect is not followed (a new form: signing in used up the form's token)
            page = await http.get("/dashboard/login")
            good["csrf"] = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            reply = await http.post("/dashboard/login", data={**good, "next": "https://evil.example/"})
            assert reply.headers["location"] == "/dashboard"

            # five wrong passwords lock the account, even for the right one afterwards
            page = await http.get("/dashboard/login")
            good["csrf"] = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            for _ in range(5):
                wrong = await http.post("/dashboard/login", data={**good, "password": "not the password"})
                assert wrong.status_code == 401
            assert (await http.post("/dashboard/login", data=good)).status_code == 401

            # an API client's role is not enough: only committee and admin people see the dashboard
            _, other_token = await users.add("nurse", "nurse", "Organization/hc-1", "admin")
            assert (await _welcome(http, "nurse", other_token, "another long password")).status_code == 303


async def test_pages_read_cached_figures_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path, auth=True, data_dir=tmp_path / "data")
    async with running_app(settings) as (app, _):
        await load_population(app.state.store, seed=51, children=60)
        users = UserRegistry(app.state.store)
        _, token = await users.add("malee", "มาลี", "Organization/khet-1", "committee")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            assert (await _welcome(http, "malee", token, "a long enough password")).status_code == 303
            analytics = analytics_of(app.state)
            assert await analytics.ready(timeout=300)

            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise AssertionError("a page read the FHIR store")

            for name in ("iterate", "search", "history", "read"):
                monkeypatch.setattr(app.state.store, name, refuse)
            for url in (
                "/dashboard",
                "/dashboard?indicator=referrals:overdue&period=2025",
                "/dashboard/district/1011?period=2025",
                "/dashboard/export.csv?indicator=epi-coverage:epi-12m&period=2025",
                "/dashboard?lang=en",
            ):
                reply = await http.get(url)
                assert reply.status_code == 200, (url, reply.text[:500])
            assert (await http.get("/dashboard/district/9999")).status_code == 404  # not a Bangkok khet
            csv_text = (await http.get("/dashboard/export.csv?period=2025")).content.decode("utf-8-sig")
            lines = csv_text.splitlines()
            assert len(lines) == 2 + 50  # header, Bangkok, 50 districts
            assert "<5" in csv_text
            monkeypatch.undo()


async def test_figures_follow_changes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth=False, data_dir=tmp_path / "data")
    async with running_app(settings) as (app, http):
        written = await load_population(app.state.store, seed=52, children=30)
        analytics = analytics_of(app.state)
        assert await analytics.ready(timeout=300)
        url = "Measure/referrals/$evaluate-measure?periodStart=2025-01-01&periodEnd=2025-12-31"
        before = (await http.get(url)).json()["group"][0]["population"][0]["count"]
        task = next(r for r in written if r["resourceType"] == "Task")
        copy = {k: v for k, v in task.items() if k not in ("id", "meta")}
        copy["authoredOn"] = copy["lastModified"] = "2025-06-01T09:00:00+07:00"
        created = await http.post("Task", json=copy)
        assert created.status_code == 201, created.text
        await analytics.refresh(figures_now=True)  # the background refresher may have been first
        after = (await http.get(url)).json()["group"][0]["population"][0]["count"]
        assert after == before + 1
        assert (await http.delete(f"Task/{created.json()['id']}")).status_code in (200, 204)
        await analytics.refresh(figures_now=True)  # the background refresher may have been first
        assert (await http.get(url)).json()["group"][0]["population"][0]["count"] == before
        assert (
            analytics.figures is not None and analytics.figures.generation == analytics.warehouse.generation
        )


async def test_parallel_guesses_still_lock_the_account(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth=True, data_dir=tmp_path / "data")
    async with running_app(settings) as (app, _):
        users = UserRegistry(app.state.store)
        user, _ = await users.add("somchai", "สมชาย", "Organization/khet-1", "committee")
        await users.set_password(user, "the right password")
        guesses = await asyncio.gather(*(users.check_password("somchai", f"guess {i}") for i in range(12)))
        assert guesses == [None] * 12
        held = await users.get("somchai")
        assert held is not None and held.locked_until > time.time()
        assert await users.check_password("somchai", "the right password") is None  # locked
