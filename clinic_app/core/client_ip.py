"""The address a request came from, seen through the reverse proxies the deployment trusts.

Sign-in throttling (django-axes), the audit trail and the acting-user record all key on it, so a
client must not be able to choose it: ``X-Forwarded-For`` is read only when the connection comes
from a proxy in ``TRUSTED_PROXIES``, and then from the right, where the trusted proxies appended
what they saw; everything left of the first untrusted entry was written by the client.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _address(value: str) -> Address | None:
    """An address from a ``REMOTE_ADDR`` or ``X-Forwarded-For`` entry: bare, ``host:port`` or
    ``[v6]:port``; None when it is not an IP address (a unix socket, garbage)."""
    text = value.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port; bare IPv6 has several colons
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d: one client, one address.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_ip(request: HttpRequest) -> str:
    """The client's IP address ("" when unknown). Also django-axes' ``AXES_CLIENT_IP_CALLABLE``."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    peer = _address(remote)
    if peer is None:
        return remote
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not _trusted(peer, networks):
        return str(peer)
    client = peer
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR") or "")
    for entry in reversed(forwarded.split(",")):
        if not entry.strip():
            continue
        hop = _address(entry)
        if hop is None:
            # A trusted proxy writes addresses: stop at the last hop that one vouched for.
            break
        client = hop
        if not _trusted(hop, networks):
            break
    return str(client)
