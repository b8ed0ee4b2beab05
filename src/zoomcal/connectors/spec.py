"""What a provider tells zoomcal about itself: the provider spec every `connectors/<provider>/` folder exports.

A spec says what the provider is for (its roles), what linking it takes (options and secrets), how a link is
checked (a token and one real read, so a wrong secret or an unreachable URL is refused when linking, not at the
first sync), how its connector and token grant are built, how it pushes changes, whether its grant can be
revoked, and what its connector can do. Everything outside the provider's folder asks the spec; nothing else
branches on a provider's name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from zoomcal.connectors.base import Capabilities, Connector
from zoomcal.connectors.contacts import ContactSource
from zoomcal.net import Resolver, system_resolver

if TYPE_CHECKING:
    from zoomcal.auth.oauth import TokenSource
    from zoomcal.mapping.rules import MappingRules

# What a provider's calendars are for.
MEETINGS = "meetings"    # holds the user's Zoom meetings: the "a" side of the user's sync pair
CALENDAR = "calendar"    # a calendar: may receive the meetings, is read for availability
BUSY = "feed"            # a read-only busy source (an ICS feed): read for availability, never written
PRESENCE = "presence"    # can read and set the person's presence status (its connector has get/set_presence)
CONTACTS = "contacts"    # a directory or address book: read by the contacts service through the spec's `contacts`
ROLES = (MEETINGS, CALENDAR, BUSY, PRESENCE, CONTACTS)


@dataclass(frozen=True)
class Option:
    """One input a link takes. Secrets are never shown, logged or sent anywhere but to the provider."""

    name: str
    help: str
    required: bool = False
    secret: bool = False
    default: str = ""


@dataclass
class LinkRequest:
    user_email: str
    options: dict[str, str]
    secrets: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.options.get(name) or self.secrets.get(name) or default


@dataclass
class Linked:
    """What a checked link stores: the calendar's id and name, non-secret configuration, and the sealed secret."""

    remote_id: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    secret: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class AccountView:
    """A stored account as a spec sees it: its configuration, its opened secret, its calendar."""

    id: int
    config: dict[str, Any]
    secret: dict[str, Any]
    calendar: str
    user_email: str = ""
    on_rotate: Callable[[str], Any] | None = None    # a grant that rotates refresh tokens hands each new one here

    def option(self, name: str, default: str = "") -> str:
        return str(self.config.get(name) or default)


@dataclass
class Env:
    """What zoomcal lends a provider to talk to it: settings-derived limits, the HTTP seam and the URL guard."""

    rules: MappingRules
    transport: httpx.AsyncBaseTransport | None = None
    resolver: Resolver = system_resolver
    timeout: float = 20.0
    allow_private: bool = False
    # whether a link may name a file on this machine: its operator may (the command line), a person over the
    # web may not
    allow_files: bool = True
    # wraps a token grant into the token source connectors use (the store-backed, shared one at run time)
    share_tokens: Callable[[TokenSource], TokenSource] = lambda grant: grant
    # the registry key of the provider this environment was made for: the label of its API call metrics
    provider: str = ""
    # what time it is (the application's clock: a source that reads some things only now and then asks it)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


@dataclass(frozen=True)
class SignIn:
    """OAuth authorization code + PKCE endpoints for linking by signing in."""

    authorize_url: str
    token_url: str
    scope: str                                      # "" when the app's configuration decides (Zoom)
    extra: tuple[tuple[str, str], ...] = ()         # more sign-in parameters (Google: access_type=offline)
    client_auth: str = "post"                       # the client at the token endpoint: in the form, or "basic"


@dataclass(frozen=True)
class PushTarget:
    """Whose data a notification names: a calendar by its id on a provider, or an item by its id there. A
    notification that a person set their presence status by hand carries that status in `presence`."""

    provider: str
    calendar: str | None = None
    item: str | None = None
    changed_at: datetime | None = None       # when the provider says the change happened
    presence: str | None = None              # a presence status the person set themselves


@dataclass(frozen=True)
class Subscription:
    """A provider-side push channel for one calendar: its id, the resource it watches, the random token every
    notification on it must carry back (stored sealed), and when the provider ends it."""

    channel_id: str
    resource_id: str
    token: str
    expires_at: datetime


# what a verified notice asks for
NOTHING = "nothing"        # e.g. Google's `sync` message: the channel works, nothing changed
CHANGED = "changed"        # the calendar changed: its owner's sync is due
RENEW = "renew"            # the provider wants the channel renewed (re-authorized) now
RECREATE = "recreate"      # the provider dropped the channel: create a new one, and sync (changes may be lost)
RESYNC = "resync"          # the provider missed notifications: sync


@dataclass(frozen=True)
class Notice:
    """One notification about one stored channel, as parsed (not yet verified): `proof` is what it carries to
    prove itself (the channel's token), checked against the stored subscription by the channel's `check`."""

    channel_id: str
    action: str
    proof: str = ""
    resource_id: str | None = None
    changed_at: datetime | None = None
    item: str | None = None                  # the item a change names, where the notification says
    version: str | None = None               # and its version after the change (an etag)


@dataclass(frozen=True)
class PushChannel:
    """A notification endpoint (`/webhooks/{name}`) shared by the providers that list it.

    Either signed with a configured secret (`secret_setting`, `verify`, `handshake`: Zoom), or backed by
    subscriptions zoomcal creates per calendar (`subscribe`, `renew`, `stop`, `notices`, `check`: Google
    `events.watch`, Graph subscriptions), whose notifications are verified against the stored subscription they
    name."""

    name: str
    secret_setting: str = ""
    # (secret, headers, body, now) -> the verified notification; raises PushRefused(reason)
    verify: Callable[[str, Mapping[str, str], bytes, float], dict[str, Any]] | None = None
    # a verified notification that is a handshake -> the answer to send, else None
    handshake: Callable[[str, dict[str, Any]], dict[str, Any] | None] | None = None
    # --- subscription-backed channels ---
    # (view, env, callback URL) -> a new subscription for the view's calendar
    subscribe: Callable[[AccountView, Env, str], Awaitable[Subscription]] | None = None
    # (view, env, current, callback URL) -> the subscription that replaces it (the same id with a later expiry,
    # or a new channel: then the old one is already stopped)
    renew: Callable[[AccountView, Env, Subscription, str], Awaitable[Subscription]] | None = None
    stop: Callable[[AccountView, Env, Subscription], Awaitable[None]] | None = None
    # (query) -> the plain-text answer to a validation request (sent before any subscription exists), else None
    challenge: Callable[[Mapping[str, str]], str | None] | None = None
    # (headers, query, body) -> the notices a request holds; raises PushRefused when it is not one
    notices: Callable[[Mapping[str, str], Mapping[str, str], bytes], list[Notice]] | None = None
    # (notice, the stored subscription it names, with its token opened) -> None; raises PushRefused
    check: Callable[[Notice, Subscription], None] | None = None
    renew_ahead: timedelta = timedelta(hours=24)     # renew this long before the provider ends a subscription
    answer_status: int = 200                         # what a received notification is answered with

    @property
    def subscribable(self) -> bool:
        return self.subscribe is not None


@dataclass(frozen=True)
class ProviderSpec:
    key: str
    label: str
    roles: frozenset[str]
    linking: str                                    # how linking works, in words (shown to admins)
    options: tuple[Option, ...]
    link: Callable[[LinkRequest, Env], Awaitable[Linked]]        # check a new link (a token, one real read)
    # the same read for a stored account (health); it may answer what it learnt of the account's profile (e-mail,
    # time zone, role, licence): a later check that finds it changed asks for the account to be linked again
    check: Callable[[AccountView, Env], Awaitable[dict[str, Any] | None]]
    connector: Callable[[AccountView, Env], Connector]
    capabilities: Capabilities
    secrets: Callable[[Mapping[str, str]], tuple[Option, ...]] = lambda _options: ()
    grant: Callable[[AccountView, Env], TokenSource] | None = None
    revoke: Callable[[AccountView, Env], Awaitable[str]] | None = None
    sign_in: Callable[[Mapping[str, str]], SignIn] | None = None
    push: PushChannel | None = None
    push_targets: Callable[[dict[str, Any]], list[PushTarget]] | None = None
    default_label: str = ""                         # name of the calendar when the provider gives none
    # the contact source of a linked account (providers with the CONTACTS role)
    contacts: Callable[[AccountView, Env], ContactSource] | None = None
    # what each feature of a linked calendar needs of an OAuth grant ("read", "write", "profile"): every requirement
    # met by one of its scopes, as the provider spells them (its reference lists, per operation, the scopes any one
    # of which allows it)
    scopes: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)

    @property
    def calendar_role(self) -> str | None:
        """The role a linked calendar of this provider takes, or None when linking it makes no calendar (a
        contacts-only source)."""
        return next((r for r in (MEETINGS, CALENDAR, BUSY) if r in self.roles), None)

    @property
    def role(self) -> str:
        """The role a linked calendar of this provider takes: meetings, calendar or busy source."""
        for role in (MEETINGS, CALENDAR, BUSY):
            if role in self.roles:
                return role
        raise ValueError(f"provider {self.key} has no calendar role")

    def option_names(self) -> set[str]:
        return {o.name for o in self.options}


@dataclass(frozen=True)
class ScopeNeed:
    """A feature's needs judged against a grant: met, by which granted scopes, and what is lacking."""

    feature: str
    met: bool
    by: tuple[str, ...]                         # the granted scopes that meet it
    lacking: tuple[tuple[str, ...], ...]        # requirements none of whose scopes was granted

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "met": self.met, "by": list(self.by),
                "lacking": [list(one_of) for one_of in self.lacking]}


def _scope_key(scope: str) -> str:
    """Scopes compare without case and without Graph's resource prefix (a token answer may carry either)."""
    scope = scope.strip().lower()
    return scope.removeprefix("https://graph.microsoft.com/")


def judge_scopes(needs: Mapping[str, tuple[tuple[str, ...], ...]], granted: list[str] | None) -> list[ScopeNeed]:
    """Each feature's needs against the scopes granted (a pure function; nothing when the grant is not known)."""
    if granted is None:
        return []
    held = {_scope_key(g): g for g in granted}
    out = []
    for feature, requirements in needs.items():
        by: list[str] = []
        lacking = []
        for one_of in requirements:
            found = [held[_scope_key(s)] for s in one_of if _scope_key(s) in held]
            if found:
                by.extend(g for g in found if g not in by)
            else:
                lacking.append(tuple(one_of))
        out.append(ScopeNeed(feature, not lacking, tuple(by), tuple(lacking)))
    return out


def no_calendar(view: AccountView, _env: Env) -> Connector:
    """The `connector` of a contacts-only provider: linking it makes no calendar, so none is ever synced."""
    from zoomcal.errors import ConfigError

    raise ConfigError(f"account {view.id} is a contact source, not a calendar")


CONTACTS_ONLY = Capabilities(writable=False, recurrence=False, occurrence_edits=False, markers=False)


class PushRefused(Exception):
    """A notification that failed verification (unsigned, wrong signature, too old, not JSON)."""


def tokens_match(given: str, stored: str) -> bool:
    """A notification's token against the stored one, in constant time (an empty one never matches)."""
    import hmac

    return bool(given) and bool(stored) and hmac.compare_digest(given.encode(), stored.encode())
