"""Identity tests run with auth on: the security suite's world of registered agencies and tokens."""

from tests.security.conftest import world  # noqa: F401  (the fixture)
