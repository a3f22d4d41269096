"""People who sign in to the dashboard: committee members (and admins), registered with ``termtem user``.

An admin registers a person and hands them a one-time sign-in link (valid 72 hours); following it, the
person chooses a password. Later sign-ins use name and password; five wrong passwords lock the account
for 15 minutes. Passwords are stored as scrypt hashes with a per-user salt; links as SHA-256 digests.
Records live in the store's key/value area (namespace ``dashboard-users``), so every server of a
site sees the same people.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from fhir_server.security import roles

NAMESPACE = "dashboard-users"
LINK_SECONDS = 72 * 3600
LOCK_AFTER = 5
LOCK_SECONDS = 15 * 60
MIN_PASSWORD = 10
DASHBOARD_ROLES = ("committee", "admin")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# One password check at a time per known user in this process: parallel guesses would otherwise each
# read the same failure count and never reach the lock.
_CHECKING: dict[str, asyncio.Lock] = {}


class UserError(ValueError):
    """A request about a user that cannot be honoured (the message is safe to show)."""


@dataclass
class User:
    username: str
    display_name: str
    organization: str
    role: str
    password_hash: str = ""
    link_digest: str = ""
    link_expires: float = 0.0
    failures: int = 0
    locked_until: float = 0.0
    created: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    derived = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${salt.hex()}${derived.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        kind, salt, expected = stored.split("$")
    except ValueError:
        return False
    if kind != "scrypt":
        return False
    derived = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), dklen=32, **_SCRYPT)
    return hmac.compare_digest(derived.hex(), expected)


class UserRegistry:
    def __init__(self, store: Any) -> None:
        self.store = store

    async def get(self, username: str) -> User | None:
        data = await self.store.kv_get(NAMESPACE, username)
        return User(**data) if data else None

    async def save(self, user: User) -> None:
        await self.store.kv_put(NAMESPACE, user.username, user.to_json())

    async def list(self) -> list[User]:
        return [User(**value) for _, value in sorted(await self.store.kv_list(NAMESPACE))]

    async def remove(self, username: str) -> bool:
        return bool(await self.store.kv_delete(NAMESPACE, username))

    async def add(self, username: str, display_name: str, organization: str, role: str) -> tuple[User, str]:
        """Register a person; returns the user and the one-time sign-in token."""
        if not _NAME.match(username):
            raise UserError("a user name is 2-64 lower-case letters, digits, '.', '_' or '-'")
        if role not in DASHBOARD_ROLES:
            raise UserError(f"dashboard users are {' or '.join(DASHBOARD_ROLES)}")
        roles.get_role(role)
        from fhir_server.security.clients import check_organization

        check_organization(organization)
        if await self.get(username) is not None:
            raise UserError(f"the user {username} exists already")
        user = User(username, display_name or username, organization, role, created=time.time())
        token = self._new_link(user)
        await self.save(user)
        return user, token

    def _new_link(self, user: User) -> str:
        token = secrets.token_urlsafe(32)
        user.link_digest, user.link_expires = _digest(token), time.time() + LINK_SECONDS
        return token

    async def new_link(self, username: str) -> str:
        """A fresh one-time link (for a first sign-in or a forgotten password); the old one stops working."""
        user = await self.get(username)
        if user is None:
            raise UserError(f"no user {username}")
        token = self._new_link(user)
        await self.save(user)
        return token

    async def user_for_link(self, username: str, token: str) -> User | None:
        user = await self.get(username)
        if user is None or not user.link_digest or time.time() > user.link_expires:
            return None
        return user if hmac.compare_digest(user.link_digest, _digest(token)) else None

    async def set_password(self, user: User, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise UserError(f"choose a password of at least {MIN_PASSWORD} characters")
        if password.lower() in (user.username.lower(), user.display_name.lower()):
            raise UserError("the password must not be your name")
        user.password_hash = await asyncio.to_thread(hash_password, password)
        user.link_digest, user.link_expires = "", 0.0
        user.failures, user.locked_until = 0, 0.0
        await self.save(user)

    async def check_password(self, username: str, password: str) -> User | None:
        """The user when the password is right; failures count towards a temporary lock.

        The hashing runs off the event loop (a flood of sign-ins must not stall the API), and an unknown
        or locked name costs the same work as a known one, so timing tells nothing."""
        if await self.get(username) is None:
            await asyncio.to_thread(hash_password, password)
            return None
        lock = _CHECKING.setdefault(username, asyncio.Lock())
        async with lock:
            return await self._check(username, password)

    async def _check(self, username: str, password: str) -> User | None:
        user = await self.get(username)  # read again under the lock: the failure count is current
        if user is None:
            return None
        now = time.time()
        if user.locked_until > now:
            await asyncio.to_thread(hash_password, password)
            return None
        if user.password_hash:
            matches = await asyncio.to_thread(password_matches, password, user.password_hash)
        else:  # no password chosen yet: the same work, and never a match
            matches = not await asyncio.to_thread(hash_password, password)
        if matches:
            user.failures = 0
            await self.save(user)
            return user
        user.failures += 1
        if user.failures >= LOCK_AFTER:
            user.locked_until, user.failures = now + LOCK_SECONDS, 0
        await self.save(user)
        return None
