"""Where a subscription may send notifications (no server-side request forgery).

An endpoint must be ``https`` on a public address. Plain ``http`` is allowed only to a loopback
address, and only when loopback endpoints are configured (``TERMTEM_SUBSCRIPTION_LOOPBACK=on``:
local receivers, tests, demos). Private, link-local, shared, multicast and reserved addresses are
refused unless their network is allowed (``TERMTEM_SUBSCRIPTION_ALLOWED_NETWORKS=10.20.0.0/16,...``).

The host is resolved and **every** address it resolves to is checked, when the Subscription is
written and again before each delivery; the request then goes to the checked address itself (the
TLS name is still the host's), so a DNS answer that changes in between (rebinding) cannot redirect
a notification inside the network. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 forms that carry an IPv4 address a packet ends up at (Python counts them as global): NAT64's
# well-known prefix (RFC 6052) and the deprecated IPv4-compatible form; 6to4 (RFC 3056) is found by
# ``sixtofour``. The local-use NAT64 prefix (RFC 8215) translates inside a network: never public.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


class EndpointRefused(ValueError):
    """The endpoint is not one the server sends to; the message says why."""


class EndpointUnresolved(EndpointRefused):
    """The endpoint's host does not resolve (now): no address to check or send to."""


@dataclass(frozen=True)
class EndpointPolicy:
    loopback: bool = False
    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> EndpointPolicy:
        networks = []
        for text in str(getattr(settings, "subscription_allowed_networks", "") or "").split(","):
            if text.strip():
                networks.append(ipaddress.ip_network(text.strip(), strict=False))
        return cls(bool(getattr(settings, "subscription_loopback", False)), tuple(networks))


@dataclass(frozen=True)
class Endpoint:
    """A checked endpoint: the URL as given, and the address to connect to."""

    url: str
    host: str  # as written (the TLS name and Host header)
    address: str  # the checked IP address the request goes to

    def connect_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        netloc = literal if parts.port is None else f"{literal}:{parts.port}"
        return parts._replace(netloc=netloc).geturl()

    def host_header(self) -> str:
        port = urlsplit(self.url).port
        return self.host if port is None else f"{self.host}:{port}"


def check_syntax(url: str, policy: EndpointPolicy) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable endpoint URL; ``EndpointRefused`` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EndpointRefused(f"'{url}' is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise EndpointRefused(f"'{url}' is not an https URL")
    if scheme == "http" and not policy.loopback:
        raise EndpointRefused(
            f"'{url}' is plain http: endpoints must be https (http is allowed only to a loopback"
            " address, when the server is configured for it)"
        )
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("the endpoint URL must not carry a user name or password (use channel.header)")
    if not parts.hostname:
        raise EndpointRefused(f"'{url}' names no host")
    if scheme == "http" and not _loopback_name(parts.hostname):
        raise EndpointRefused(
            f"'{url}' is plain http to '{parts.hostname}', not a loopback address: endpoints must be https"
        )
    if parts.fragment:
        raise EndpointRefused("the endpoint URL must not have a fragment")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def _loopback_name(host: str) -> bool:
    """A host that is loopback without asking DNS: a loopback literal or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _carried_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches (mapped, 6to4, NAT64, IPv4-compatible), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):  # not :: or ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _address_problem(address: IPAddress, policy: EndpointPolicy, scheme: str) -> str | None:
    carried = _carried_ipv4(address)
    if carried is not None:
        address = carried
    elif address in _LOCAL_NAT64:
        return "a local-use NAT64 address (not allowed by the server's configuration)"
    if address.is_loopback:
        return None if policy.loopback else "a loopback address (not allowed by the server's configuration)"
    if scheme == "http":
        return "not a loopback address, so plain http is refused (use https)"
    if any(address in network for network in policy.allowed):
        return None
    if not address.is_global or address.is_multicast:
        return "a private, link-local or reserved address (not allowed by the server's configuration)"
    return None


async def resolve(url: str, policy: EndpointPolicy) -> Endpoint:
    """Check ``url`` and every address its host resolves to; the endpoint to send to."""
    scheme, host, port = check_syntax(url, policy)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise EndpointUnresolved(f"the endpoint host '{host}' does not resolve ({exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
        if not addresses:
            raise EndpointUnresolved(f"the endpoint host '{host}' does not resolve")
    for text in addresses:
        problem = _address_problem(ipaddress.ip_address(text), policy, scheme)
        if problem is not None:
            raise EndpointRefused(f"the endpoint host '{host}' resolves to {text}, {problem}")
    return Endpoint(url, host, addresses[0])
