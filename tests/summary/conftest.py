"""The security tests' auth-on world (registered agencies with tokens), for the summary's consent tests."""

from tests.security.conftest import world  # noqa: F401
