"""Google contacts as a provider (`google-contacts`): a contacts-only source through the People API, linked with user
OAuth (client id and secret, refresh token). The `features` option chooses the collections read (contacts, other
contacts, the Workspace directory); the link is checked by reading one person of each."""

from __future__ import annotations

from zoomcal.auth.oauth import TokenSource
from zoomcal.connectors import rest
from zoomcal.connectors.google.people import API, DEFAULT_FEATURES, FEATURES, GooglePeopleSource, parse_features, probe
from zoomcal.connectors.google.spec import TOKEN_URL
from zoomcal.connectors.spec import (
    CONTACTS,
    CONTACTS_ONLY,
    AccountView,
    Env,
    Linked,
    LinkRequest,
    Option,
    ProviderSpec,
    no_calendar,
)

SECRETS = ("client_id", "client_secret", "refresh_token")
FEATURES_OPTION = Option("features", f"the collections read, comma-separated: {', '.join(FEATURES)}",
                         default=",".join(DEFAULT_FEATURES))


def grant(view: AccountView, _env: Env) -> TokenSource:
    return rest.refresh_grant(view, TOKEN_URL, basic_auth=False)


def source(view: AccountView, env: Env) -> GooglePeopleSource:
    return GooglePeopleSource(rest.api_client(view, env, API, env.share_tokens(grant(view, env))),
                              parse_features(view.option("features")))


async def check(view: AccountView, env: Env) -> None:
    """One person of each collection read: the grant covers every feature the account reads."""
    tokens = grant(view, env)
    for feature in parse_features(view.option("features")):
        path, params = probe(feature)
        await rest.first_read(view, env, API, tokens, path, params)


async def link(request: LinkRequest, env: Env) -> Linked:
    features = parse_features(request.get("features"))
    view = rest.request_view(request, request.user_email, ("api_base", "token_url"), SECRETS)
    view.config["features"] = ",".join(features)
    await check(view, env)
    return Linked(request.user_email, "Google contacts", view.config, view.secret,
                  notes=[f"reads {', '.join(features)}"])


async def revoke(view: AccountView, env: Env) -> str:
    return await rest.revoke(rest.revoke_url(view.option("token_url", TOKEN_URL)), view.secret["refresh_token"],
                             env)


CONTACTS_SPEC = ProviderSpec(
    key="google-contacts", label="Google contacts", roles=frozenset({CONTACTS}),
    linking="user OAuth: client id and secret, refresh token (scopes: those of the features read)",
    options=(rest.CLIENT_ID, FEATURES_OPTION, *rest.endpoint_options(API, TOKEN_URL)),
    secrets=lambda _options: (rest.CLIENT_SECRET, rest.REFRESH_TOKEN), link=link, check=check,
    connector=no_calendar, capabilities=CONTACTS_ONLY, grant=grant, revoke=revoke, contacts=source,
    default_label="Google contacts")
