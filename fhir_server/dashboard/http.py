"""The dashboard's web pages at ``/dashboard``: sign-in, the district map, a district's page, CSV export.

Behind the same authority as the API: with auth on, a person signs in (``termtem user add`` gives a
one-time link to choose a password) and gets a session cookie (HttpOnly, Secure, SameSite=Strict);
every form that changes something carries the session's CSRF token; only committee and admin users
may look; every page and sign-in is recorded as an AuditEvent. Pages read the cached figures only.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from functools import cache
from importlib import resources as package_files
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import FastAPI
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from fhir_server.analytics.service import analytics_of
from fhir_server.config import Settings
from fhir_server.dashboard import pages
from fhir_server.dashboard.sessions import COOKIE, Session, Sessions, csrf_ok
from fhir_server.dashboard.users import DASHBOARD_ROLES, User, UserError, UserRegistry
from fhir_server.security import audit

PREFIX = "/dashboard"
LANG_COOKIE = "termtem_lang"
LOGIN_CSRF_COOKIE = "termtem_login_csrf"
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # so a form post carries our Origin (no-referrer sends "null")
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}
_MAX_FORM = 16 * 1024
_STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".md": "text/plain",
}


@cache
def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("fhir_server.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["query"] = lambda params: urlencode({k: v for k, v in params.items() if v is not None})
    return env


def _lang(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or "th"
    return chosen if chosen in ("th", "en") else "th"


def _html(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    lang = _lang(request)
    kept = urlencode(
        [(k, v) for k, v in request.query_params.multi_items() if k not in ("lang", "token", "user")]
    )
    body = (
        _templates()
        .get_template(template)
        .render(
            t=pages.messages()[lang],
            lang=lang,
            other_lang="en" if lang == "th" else "th",
            prefix=PREFIX,
            request_query=kept,
            **context,
        )
    )
    response = Response(body, status_code=status, media_type="text/html; charset=utf-8", headers=HEADERS)
    if request.query_params.get("lang") in ("th", "en"):
        response.set_cookie(
            LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, secure=True, samesite="strict", path=PREFIX
        )
    return response


async def _form(request: Request) -> dict[str, str]:
    """A small url-encoded form (sign-in, password, sign-out); anything else is empty."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > _MAX_FORM:
            return {}
    return dict(parse_qsl(data.decode("utf-8", errors="replace"), keep_blank_values=True))


def _same_origin(request: Request) -> bool:
    """A form post must come from our own pages (Origin, else Referer, when the browser sends one)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True
    sent = urlsplit(origin)
    return f"{sent.scheme}://{sent.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


async def _audit(
    request: Request, user: User | None, status: int, what: str, interaction: str = "operation"
) -> None:
    record = audit.AuditRecord(
        interaction=interaction,
        outcome_status=status,
        client_id=f"dashboard:{user.username}" if user else None,
        client_name=user.display_name if user else None,
        organization=user.organization if user else None,
        purpose="POPHLTH",
        address=request.client.host if request.client else None,
        query=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        description=what,
    )
    await audit.write_audit(request.app.state.store, record)


class _Dashboard:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def users(self, request: Request) -> UserRegistry:
        return UserRegistry(request.app.state.store)

    def sessions(self, request: Request) -> Sessions:
        return Sessions(request.app.state.store)

    async def current(self, request: Request) -> tuple[User, Session | None] | None:
        if not self.settings.auth:
            return User("local", "local (auth off)", "Organization/local", "admin"), None
        session = await self.sessions(request).find(request.cookies.get(COOKIE))
        if session is None:
            return None
        user = await self.users(request).get(session.username)
        if user is None or user.role not in DASHBOARD_ROLES:
            return None
        return user, session

    def to_login(self, request: Request) -> Response:
        target = str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(
            f"{PREFIX}/login?{urlencode({'next': target})}", status_code=303, headers=HEADERS
        )

    async def guarded(self, request: Request) -> tuple[User, Session | None] | Response:
        found = await self.current(request)
        if found is None:
            return self.to_login(request)
        analytics = analytics_of(request.app.state)
        analytics.start()
        return found

    # -- pages ------------------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        params = request.query_params
        return await self._figures_page(
            request,
            "overview.html",
            lambda figures: pages.overview(
                figures, params.get("indicator"), params.get("period"), _lang(request)
            ),
            "dashboard overview",
            lambda page: f"{page['indicator'].key} {page['period']}",
        )

    async def district(self, request: Request) -> Response:
        code = request.path_params["code"]
        params = request.query_params
        return await self._figures_page(
            request,
            "district.html",
            lambda figures: pages.district_page(
                figures, code, params.get("indicator"), params.get("period"), _lang(request)
            ),
            f"dashboard district {code}",
            known=code in pages.districts(),
            unknown=f"{code}?",
        )

    async def _figures_page(
        self,
        request: Request,
        template: str,
        build: Callable[[Any], dict[str, Any]],
        label: str,
        detail: Callable[[dict[str, Any]], str] | None = None,
        *,
        known: bool = True,
        unknown: str = "",
    ) -> Response:
        """A page drawn from the cached figures: login first, 404 for an unknown subject, a
        "preparing" page until the first figures exist, every page shown audited."""
        found = await self.guarded(request)
        if isinstance(found, Response):
            return found
        user, session = found
        if not known:
            return _html(request, "message.html", 404, user=user, session=session, message=unknown)
        figures = analytics_of(request.app.state).figures
        if figures is None:
            await _audit(request, user, 200, f"{label} (figures not ready)")
            return _html(request, "preparing.html", user=user, session=session)
        page = build(figures)
        await _audit(request, user, 200, f"{label}: {detail(page)}" if detail else label)
        return _html(
            request,
            template,
            user=user,
            session=session,
            page=page,
            figures=figures,
            updated=_time(figures),
        )

    async def export(self, request: Request) -> Response:
        found = await self.guarded(request)
        if isinstance(found, Response):
            return found
        user, _ = found
        figures = analytics_of(request.app.state).figures
        if figures is None:
            return Response("preparing", status_code=503, headers={**HEADERS, "Retry-After": "10"})
        params = request.query_params
        body = pages.export_csv(figures, params.get("indicator"), params.get("period"), _lang(request))
        await _audit(request, user, 200, f"dashboard export {params.get('indicator')} {params.get('period')}")
        label = f"{params.get('indicator', 'indicator')}-{params.get('period', '12m')}"
        safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "-") else "-" for ch in label)
        name = f"termtem-{safe[:80]}.csv"
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    # -- signing in -------------------------------------------------------------------------------
    async def login_form(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        analytics_of(request.app.state).start()  # figures get ready while the person types
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
        response = _html(
            request,
            "login.html",
            status,
            error=error,
            csrf=token,
            next=_safe_next(request.query_params.get("next")),
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, secure=True, samesite="strict", path=PREFIX
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        t = pages.messages()[_lang(request)]
        sent, expected = str(form.get("csrf", "")), request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not _same_origin(request) or not expected or not hmac.compare_digest(sent, expected):
            return Response("cross-site form refused", status_code=403, headers=HEADERS)
        username = str(form.get("username", "")).strip().lower()[:64]
        user = await self.users(request).check_password(username, str(form.get("password", ""))[:1024])
        if user is None or user.role not in DASHBOARD_ROLES:
            await _audit(request, None, 401, f"dashboard sign-in refused for '{username}'", "login")
            return await self.login_form(request, t["bad_login"] if user is None else t["not_allowed"], 401)
        return await self._signed_in(request, user, _safe_next(str(form.get("next", ""))))

    async def _signed_in(self, request: Request, user: User, target: str) -> Response:
        token, _ = await self.sessions(request).open(user.username)
        await _audit(request, user, 200, f"dashboard sign-in of {user.username}", "login")
        response = RedirectResponse(target, status_code=303, headers=HEADERS)
        response.set_cookie(COOKIE, token, httponly=True, secure=True, samesite="strict", path=PREFIX)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
        return response

    async def logout(self, request: Request) -> Response:
        found = await self.current(request)
        form = await _form(request)
        if found is not None and found[1] is not None:
            user, session = found
            if not _same_origin(request) or not csrf_ok(session, str(form.get("csrf", ""))):  # type: ignore[arg-type]
                return Response("cross-site form refused", status_code=403, headers=HEADERS)
            await self.sessions(request).close(session)  # type: ignore[arg-type]
            await _audit(request, user, 200, f"dashboard sign-out of {user.username}", "login")
        response = RedirectResponse(f"{PREFIX}/login", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    async def welcome_form(self, request: Request) -> Response:
        username = request.query_params.get("user", "")
        token = request.query_params.get("token", "")
        user = await self.users(request).user_for_link(username, token)
        if user is None:
            return _html(
                request, "message.html", 410, message=pages.messages()[_lang(request)]["link_invalid"]
            )
        return _html(request, "welcome.html", user=user, token=token, error=None)

    async def welcome(self, request: Request) -> Response:
        form = await _form(request)
        t = pages.messages()[_lang(request)]
        if not _same_origin(request):
            return Response("cross-site form refused", status_code=403, headers=HEADERS)
        username, token = str(form.get("user", "")), str(form.get("token", ""))
        registry = self.users(request)
        user = await registry.user_for_link(username, token)
        if user is None:
            return _html(request, "message.html", 410, message=t["link_invalid"])
        password, again = str(form.get("password", ""))[:1024], str(form.get("again", ""))[:1024]
        if password != again:
            return _html(request, "welcome.html", 400, user=user, token=token, error=t["passwords_differ"])
        try:
            await registry.set_password(user, password)
        except UserError as exc:
            return _html(request, "welcome.html", 400, user=user, token=token, error=str(exc))
        await self.sessions(request).close_all(user.username)
        return await self._signed_in(request, user, PREFIX)


def _safe_next(target: str | None) -> str:
    """Only our own dashboard paths are followed after signing in (no open redirect)."""
    if target and target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX


def _time(figures: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(figures.computed_at))


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if "/" in name.replace("vendor/", "", 1) or ".." in name:
        return Response(status_code=404)
    suffix = name[name.rfind(".") :]
    if suffix not in _STATIC_TYPES:
        return Response(status_code=404)
    try:
        data = (package_files.files("fhir_server.dashboard") / "static" / name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return Response(status_code=404)
    return Response(
        data,
        media_type=_STATIC_TYPES[suffix],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


def install(app: FastAPI, settings: Settings) -> None:
    dashboard = _Dashboard(settings)
    app.add_route(PREFIX, dashboard.overview, methods=["GET"])
    app.add_route(PREFIX + "/", dashboard.overview, methods=["GET"])
    app.add_route(PREFIX + "/district/{code}", dashboard.district, methods=["GET"])
    app.add_route(PREFIX + "/export.csv", dashboard.export, methods=["GET"])
    app.add_route(PREFIX + "/login", dashboard.login_form, methods=["GET"])
    app.add_route(PREFIX + "/login", dashboard.login, methods=["POST"])
    app.add_route(PREFIX + "/logout", dashboard.logout, methods=["POST"])
    app.add_route(PREFIX + "/welcome", dashboard.welcome_form, methods=["GET"])
    app.add_route(PREFIX + "/welcome", dashboard.welcome, methods=["POST"])
    app.add_route(PREFIX + "/static/{name:path}", _static, methods=["GET"])
