"""``termtem user``: the people who sign in to the dashboard (committee members and admins)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from fhir_server.config import Settings, default_store_url

T = TypeVar("T")
user_app = typer.Typer(help="Dashboard users: add, new sign-in link, list, remove.", no_args_is_help=True)


def _with_users(store_url: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    from fhir_server.dashboard.users import UserRegistry
    from fhir_server.storage import create_store

    async def run() -> T:
        store = create_store(Settings(store_url=store_url or default_store_url()))
        await store.open()
        try:
            return await work(UserRegistry(store))
        finally:
            await store.close()

    return asyncio.run(run())


def _link(base: str, username: str, token: str) -> str:
    from urllib.parse import urlencode

    return f"{base.rstrip('/')}/dashboard/welcome?{urlencode({'user': username, 'token': token})}"


_STORE = typer.Option(None, "--store", help="Store URL (default $TERMTEM_STORE or the local sqlite store).")
_BASE = typer.Option(
    "http://127.0.0.1:8080", "--base", help="The server's address as the person will open it."
)


@user_app.command("add")
def add(
    username: str = typer.Argument(..., help="Sign-in name (lower case letters, digits, . _ -)."),
    org: str = typer.Option(
        ..., "--org", help="The person's agency, as Organization/ID (e.g. the district office)."
    ),
    role: str = typer.Option("committee", "--role", help="committee (aggregates only) or admin."),
    name: str = typer.Option("", "--name", help="The person's name as the dashboard shows it."),
    base: str = _BASE,
    store: str = _STORE,
) -> None:
    """Register a person and print their one-time sign-in link (valid 72 hours)."""
    from fhir_server.dashboard.users import UserError

    async def work(users: Any) -> str:
        _, token = await users.add(username, name, org, role)
        return token

    try:
        token = _with_users(store, work)
    except (UserError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"Registered {username} ({role}). Give them this one-time link to choose a password:")
    typer.echo(_link(base, username, token))


@user_app.command("link")
def link(username: str = typer.Argument(...), base: str = _BASE, store: str = _STORE) -> None:
    """A new one-time sign-in link (a forgotten password); the previous link stops working."""
    from fhir_server.dashboard.users import UserError

    try:
        token = _with_users(store, lambda users: users.new_link(username))
    except UserError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(_link(base, username, token))


@user_app.command("list")
def list_users(store: str = _STORE) -> None:
    """Registered dashboard users."""
    for user in _with_users(store, lambda users: users.list()):
        state = "password set" if user.password_hash else "waiting for first sign-in"
        typer.echo(f"{user.username}\t{user.role}\t{user.organization}\t{user.display_name}\t{state}")


@user_app.command("remove")
def remove(username: str = typer.Argument(...), store: str = _STORE) -> None:
    """Remove a user; their sessions end at once."""
    from fhir_server.dashboard.sessions import Sessions

    async def work(users: Any) -> bool:
        await Sessions(users.store).close_all(username)
        return bool(await users.remove(username))

    if not _with_users(store, work):
        raise typer.BadParameter(f"no user {username}")
    typer.echo(f"removed {username}")


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
