"""The workflow tests run against the auth-on app of the security tests (agencies with tokens)."""

from tests.security.conftest import world  # noqa: F401  (the fixture, re-exported)
