"""E-mail addresses as identities: one normal form per mailbox, or the reason a text is not an address.

The normal form is Unicode NFC, case-folded, the domain in its ASCII (IDNA, UTS 46) form: `Ada@Bücher.Example`
and `ada@xn--bcher-kva.example` are one mailbox. Local parts are compared case-insensitively, as every mail
system people use does (RFC 5321 allows otherwise; nobody relies on it)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import idna

MAX_ADDRESS = 254
_ASCII_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
_ASCII_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
# the common case: a lower-case ASCII dotted-atom local part (checked character by character) at a domain
# already seen
_ATOM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-.")


class NotAnAddress(ValueError):
    """A text that is no usable e-mail address; the message says why."""


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str:
    if domain.isascii():
        ascii_domain = domain.lower().rstrip(".")
    else:
        try:
            ascii_domain = idna.encode(domain.rstrip("."), uts46=True).decode()
        except idna.IDNAError as exc:
            raise NotAnAddress(f"the domain {domain!r} is not a valid internationalised domain: {exc}") from None
    if not _ASCII_DOMAIN.match(ascii_domain):
        raise NotAnAddress(f"{domain!r} is not a mail domain")
    return ascii_domain


def normalize(text: str) -> str:
    """The normal form of one address (a `mailto:` prefix and surrounding space are dropped); NotAnAddress
    with the reason otherwise."""
    if isinstance(text, str) and text.isascii() and len(text) <= MAX_ADDRESS:
        local, at, domain = text.lower().partition("@")
        if at and 0 < len(local) <= 64 and _ATOM.issuperset(local) and local[0] != "." and local[-1] != "." \
                and ".." not in local and "@" not in domain:
            try:
                return f"{local}@{_domain(domain)}"
            except NotAnAddress:
                pass
    return _normalize(text)


def _normalize(text: str) -> str:
    if not isinstance(text, str):
        raise NotAnAddress("not text")
    value = text.strip()
    if value[:7].lower() == "mailto:":
        value = value[7:]
    if not value:
        raise NotAnAddress("empty")
    if len(value) > MAX_ADDRESS:
        raise NotAnAddress(f"longer than {MAX_ADDRESS} characters")
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise NotAnAddress(f"{value[:80]!r} has no local part and domain")
    if value.isascii():
        local = local.lower()
        if not _ASCII_LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
            raise NotAnAddress(f"{value[:80]!r} has a malformed local part")
    else:
        local = unicodedata.normalize("NFC", local).casefold()
        if any(unicodedata.category(c)[0] in "CZ" or c in '"(),:;<>@[\\]' for c in local):
            raise NotAnAddress(f"{value[:80]!r} has a malformed local part")
    if len(local) > 64:
        raise NotAnAddress("the local part is longer than 64 characters")
    return f"{local}@{_domain(domain)}"


def split(addresses: tuple[str, ...] | list[str],
          cache: dict[str, str | NotAnAddress] | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Each address's normal form (in order, without repeats), and the texts that are none, with the reason.
    `cache` keeps each text's answer over many calls."""
    good: list[str] = []
    bad: list[tuple[str, str]] = []
    for text in addresses:
        answer = cache.get(text) if cache is not None else None
        if answer is None:
            try:
                answer = normalize(text)
            except NotAnAddress as exc:
                answer = exc
            if cache is not None:
                cache[text] = answer
        if isinstance(answer, NotAnAddress):
            bad.append((str(text)[:200], str(answer)))
        elif answer not in good:
            good.append(answer)
    return good, bad


def name_key(name: str) -> str:
    """A display name for comparing (never for merging): compatibility-normalised, case-folded, single spaces."""
    if name.isascii():
        return " ".join(name.lower().split())
    return " ".join(unicodedata.normalize("NFKC", name or "").casefold().split())
