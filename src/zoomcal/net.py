"""Outbound URL guard (SSRF): an admin-typed URL must not reach loopback or private networks unless allowed.

On-premises servers (Exchange, Nextcloud, an intranet ICS feed) are a real use, so the admin can allow
private ranges with ZOOMCAL_ALLOW_PRIVATE_URLS=true.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from zoomcal.errors import ConfigError

Resolver = Callable[[str], list[str]]

_TLS: list[ssl.SSLContext] = []
_TLS_LOCK = threading.Lock()


def tls() -> ssl.SSLContext:
    """The one TLS context every outbound client of the process uses (`verify=tls()`): making one reads the whole
    CA bundle, about 15 ms of CPU, which a new client per sync run would otherwise pay each time. httpx's own
    defaults (its CA bundle, SSL_CERT_FILE / SSL_CERT_DIR) decide what it trusts."""
    with _TLS_LOCK:
        if not _TLS:
            import httpx

            _TLS.append(httpx.create_ssl_context())
        return _TLS[0]


def system_resolver(host: str) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve host {host!r}: {exc}") from exc


def check_url(url: str, allow_private: bool = False, resolve: Resolver = system_resolver) -> str:
    """Return the URL if it may be fetched; raise ConfigError saying why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"only http(s) URLs are allowed, not {parts.scheme or 'no scheme'!r}: {url}")
    if not parts.hostname:
        raise ConfigError(f"URL without a host: {url}")
    if parts.username or parts.password:
        raise ConfigError("put credentials in the account's secret, not in the URL")
    if allow_private:
        return url
    for address in resolve(parts.hostname):
        ip = ipaddress.ip_address(address.split("%")[0])
        if any(_internal(inner) for inner in _unwrapped(ip)):
            raise ConfigError(f"{parts.hostname} resolves to {ip}, a loopback/private address; set "
                              "ZOOMCAL_ALLOW_PRIVATE_URLS=true to allow on-premises servers")
    return url


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _unwrapped(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list:
    """The address and every IPv4 address it carries: IPv4-mapped, 6to4 (2002::/16), Teredo (the client's
    address) and NAT64 (64:ff9b::/96) all lead to an IPv4 host that must pass the same check."""
    if ip.version == 6 and ip in NAT64:        # an IPv6-only network's way to a public IPv4 host: judge that host
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    found = [ip]
    if ip.version == 6:
        if ip.ipv4_mapped:
            found.append(ip.ipv4_mapped)
        if ip.sixtofour:
            found.append(ip.sixtofour)
        if ip.teredo:
            found.extend(ip.teredo)        # (server, client)
    return found


def _internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
            or ip.is_unspecified)
