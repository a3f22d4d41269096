"""Loaded once by the fork server the view workers start from (``scan._context``): the modules a
worker needs, the R4 definitions a view compiles against and the shipped views' plans, so each
worker starts warm."""

from __future__ import annotations

from fhir_server.analytics.views import scan
from fhir_server.analytics.views.library import shipped_views

for _definition in shipped_views():
    scan.PRECOMPILED[scan.view_key(_definition)] = scan.compile_view(_definition)
