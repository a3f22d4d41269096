"""Dashboard sessions: a random token in an HttpOnly, Secure, SameSite=Strict cookie.

The store keeps only the token's SHA-256 digest, with the user, an expiry (8 hours of inactivity, 12
at most) and the session's CSRF token, which every form that changes something must send back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

NAMESPACE = "dashboard-sessions"
COOKIE = "termtem_session"
IDLE_SECONDS = 8 * 3600
MAX_SECONDS = 12 * 3600


@dataclass
class Session:
    key: str
    username: str
    csrf: str
    created: float
    seen: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, store: Any) -> None:
        self.store = store

    async def open(self, username: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(_digest(token), username, secrets.token_urlsafe(24), now, now)
        await self._save(session)
        return token, session

    async def _save(self, session: Session) -> None:
        await self.store.kv_put(
            NAMESPACE,
            session.key,
            {
                "username": session.username,
                "csrf": session.csrf,
                "created": session.created,
                "seen": session.seen,
            },
        )

    async def find(self, token: str | None) -> Session | None:
        if not token or len(token) > 200:
            return None
        key = _digest(token)
        data = await self.store.kv_get(NAMESPACE, key)
        if not data:
            return None
        now = time.time()
        session = Session(key, data["username"], data["csrf"], data["created"], data["seen"])
        if now - session.seen > IDLE_SECONDS or now - session.created > MAX_SECONDS:
            await self.store.kv_delete(NAMESPACE, key)
            return None
        if now - session.seen > 60:  # keep writes rare: refresh the idle clock once a minute
            session.seen = now
            await self._save(session)
        return session

    async def close(self, session: Session) -> None:
        await self.store.kv_delete(NAMESPACE, session.key)

    async def close_all(self, username: str) -> None:
        for key, value in await self.store.kv_list(NAMESPACE):
            if value.get("username") == username:
                await self.store.kv_delete(NAMESPACE, key)


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf, sent or "")
