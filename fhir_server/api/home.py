"""``GET /``: a small page for people, and for FHIR clients the same CapabilityStatement as ``/metadata``.

A browser (``Accept: text/html``) gets what this server is and where to go next: the FHIR base, the
CapabilityStatement, SMART discovery when auth is on, health and readiness, the dashboard when one is
installed, and the documentation when ``TERMTEM_DOCS_URL`` names it. Any other client gets FHIR JSON.
"""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import Response

from fhir_server import FHIR_VERSION, __version__
from fhir_server.api.urls import base_url

_HTML_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}


def _wants_html(accept: str) -> bool:
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "text/html" in kinds and not any("fhir" in k or k == "application/json" for k in kinds[:1])


def _page(request: Request) -> str:
    settings = request.app.state.settings
    base = base_url(request, settings)  # the configured or listening base, never the Host header
    links = [(f"{base}/metadata", "CapabilityStatement (what this server supports)")]
    links.append((f"{base}/metadata?mode=terminology", "TerminologyCapabilities"))
    if settings.auth:
        links.append((f"{base}/.well-known/smart-configuration", "SMART on FHIR configuration (tokens)"))
    if any(getattr(route, "path", "").startswith("/dashboard") for route in request.app.routes):
        links.append(("/dashboard", "District dashboard"))
    links += [("/health", "Health"), ("/ready", "Readiness")]
    if settings.docs_url:
        links.append((settings.docs_url, "Documentation"))
    items = "\n".join(f'<li><a href="{escape(url)}">{escape(text)}</a></li>' for url, text in links)
    if not settings.docs_url:
        items += (
            "\n<li>Documentation: <code>README.md</code> and <code>docs/</code> (deployment, configuration)"
            " in the Termtem sources</li>"
        )
    auth = (
        "Every request needs a SMART Backend Services token; every access is checked against PDPA consents"
        " and audited."
        if settings.auth
        else "<strong>Auth is off</strong>: a local trial with synthetic data only."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Termtem FHIR server</title>
<style>body{{font-family:sans-serif;max-width:44em;margin:2em auto;padding:0 1em;line-height:1.5}}
code{{background:#f3f3f3;padding:0 .2em}}</style></head>
<body>
<h1>Termtem</h1>
<p>A FHIR R4 ({escape(FHIR_VERSION)}) server for Thailand's child, youth and family services.<br>
<span lang="th">เซิร์ฟเวอร์ FHIR สำหรับบริการเด็ก เยาวชน และครอบครัว</span></p>
<p>FHIR base URL: <code>{escape(base)}</code></p>
<p>{auth}</p>
<ul>
{items}
</ul>
<p><small>Termtem {escape(__version__)}</small></p>
</body></html>
"""


async def front_page(request: Request) -> Response:
    if _wants_html(request.headers.get("accept", "")):
        return Response(_page(request), media_type="text/html; charset=utf-8", headers=_HTML_HEADERS)
    from fhir_server.api import routes

    scope = dict(request.scope)
    scope["path"] = request.app.state.settings.base_path.rstrip("/") + "/metadata"
    scope["path_params"] = {"path": "metadata"}
    return await routes.handle(Request(scope, request.receive))
