"""Microsoft 365 contacts as a provider (`graph-contacts`): a contacts-only source through Microsoft Graph, linked
with user OAuth (by signing in, or with a refresh token; a client secret unless the app is public). The `features`
option chooses the collections read (the directory's users, the mailbox owner's contacts, the people relevant to
them); signing in asks for the permissions of those alone, and the link is checked by one small read of each."""

from __future__ import annotations

from collections.abc import Mapping

from zoomcal.auth.oauth import TokenSource
from zoomcal.connectors import rest
from zoomcal.connectors.graph.directory import DEFAULT_FEATURES, FEATURES, GraphContactSource, parse_features, probe
from zoomcal.connectors.graph.spec import API, LOGIN, TOKEN_URL
from zoomcal.connectors.graph.spec import secrets as graph_secrets
from zoomcal.connectors.spec import (
    CONTACTS,
    CONTACTS_ONLY,
    AccountView,
    Env,
    Linked,
    LinkRequest,
    Option,
    ProviderSpec,
    SignIn,
    no_calendar,
)

SECRETS = ("client_id", "client_secret", "refresh_token")
OPTIONS = (rest.CLIENT_ID,
           Option("mailbox", "whose contacts and people are read (default: the user's e-mail)"),
           Option("features", f"the collections read, comma-separated: {', '.join(FEATURES)}",
                  default=",".join(DEFAULT_FEATURES)),
           Option("tenant", "the Microsoft Entra tenant for signing in (id, domain or common)", default="common"),
           Option("login_base", "the sign-in service", default=LOGIN),
           *rest.endpoint_options(API, TOKEN_URL))


def scope(features: tuple[str, ...]) -> str:
    """What signing in asks for: a refresh token, and the permissions of the features read."""
    return " ".join(["offline_access", *sorted({s for f in features for s in FEATURES[f]})])


def sign_in(options: Mapping[str, str]) -> SignIn:
    base = (options.get("login_base") or LOGIN).rstrip("/")
    tenant = options.get("tenant") or "common"
    return SignIn(f"{base}/{tenant}/oauth2/v2.0/authorize", f"{base}/{tenant}/oauth2/v2.0/token",
                  scope(parse_features(options.get("features"))))


def grant(view: AccountView, _env: Env) -> TokenSource:
    return rest.refresh_grant(view, TOKEN_URL, basic_auth=False)


def _mailbox(view: AccountView) -> str:
    return view.option("mailbox") or view.calendar or view.user_email


def source(view: AccountView, env: Env) -> GraphContactSource:
    return GraphContactSource(rest.api_client(view, env, API, env.share_tokens(grant(view, env))), _mailbox(view),
                              parse_features(view.option("features")))


async def check(view: AccountView, env: Env) -> None:
    """One item of each collection read: the grant holds every permission the account's features need."""
    tokens = grant(view, env)
    for feature in parse_features(view.option("features")):
        path, params, headers = probe(feature, _mailbox(view))
        await rest.first_read(view, env, API, tokens, path, params, headers=headers)


async def link(request: LinkRequest, env: Env) -> Linked:
    features = parse_features(request.get("features"))
    mailbox = request.get("mailbox", request.user_email)
    view = rest.request_view(request, mailbox, ("api_base", "token_url"), SECRETS)
    view.config.update(mailbox=mailbox, features=",".join(features))
    await check(view, env)
    return Linked(mailbox, "Microsoft 365 contacts", view.config, view.secret,
                  notes=[f"reads {', '.join(features)}"])


CONTACTS_SPEC = ProviderSpec(
    key="graph-contacts", label="Microsoft 365 contacts", roles=frozenset({CONTACTS}),
    linking="user OAuth: sign in (authorization code + PKCE) or a refresh token; a client secret unless public "
            "(permissions: those of the features read)",
    options=OPTIONS, secrets=graph_secrets, link=link, check=check, connector=no_calendar,
    capabilities=CONTACTS_ONLY, grant=grant, sign_in=sign_in, contacts=source,
    default_label="Microsoft 365 contacts")
