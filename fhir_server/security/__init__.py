"""Security: SMART Backend Services tokens, scopes, roles, PDPA consent enforcement and audit.

``install(app, settings)`` (in ``http``) wires it into the ASGI app; the pieces are plain modules the
CLI and tests call directly.
"""
