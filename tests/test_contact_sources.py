"""The Google People and Microsoft Graph contact sources against their sandboxes: full listings page by page, sync
tokens and delta links carried in the cursor (a change, an addition and a deletion come back as exactly that), an
expired token answered with a complete listing, a malformed record rejected alone, and the scopes each feature
needs; and the pure mapping of the vendors' records."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from zoomcal.connectors import registry
from zoomcal.connectors.contacts import CONTACT, OTHER, RELEVANT, USER, ContactChanges
from zoomcal.connectors.google import people as google_people
from zoomcal.connectors.graph.contacts_spec import sign_in
from zoomcal.connectors.spec import CONTACTS, CONTACTS_ONLY, AccountView, Env, LinkRequest
from zoomcal.errors import AuthExpired, ConfigError
from zoomcal.mapping import graph_directory as graph_mapping
from zoomcal.mapping import people as people_mapping
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.sandbox.world import SandboxWorld

pytestmark = pytest.mark.anyio
BASE = "http://sandbox"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def world():
    world = SandboxWorld()
    users = [world.add_user(email, name) for email, name in (("ada@example.com", "Ada Lovelace"),
                                                             ("alan@example.com", "Alan Turing"))]
    return world, users[0]


class Tamper(httpx.AsyncBaseTransport):
    """The sandbox's answers, with items slipped into the pages of one listing (records a source cannot read)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, path: str, key: str, items: list[Any]):
        self.inner, self.path, self.key, self.items = inner, path, key, items

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.path not in request.url.path or response.status_code != 200:
            return response
        await response.aread()
        body = json.loads(response.content)
        body[self.key] = [*self.items, *(body.get(self.key) or [])]
        return httpx.Response(200, json=body, request=request)


async def link(world: SandboxWorld, info: dict, provider: str, features: str = "", scope: str | None = None,
               transport: httpx.AsyncBaseTransport | None = None):
    """Link a sandbox user's contact source as an admin would -> (spec, stored view, env)."""
    request = next(r for r in world.contact_link_requests(info, BASE) if r["provider"] == provider)
    options = {**request["options"], **({"features": features} if features else {})}
    secrets = dict(request["secrets"])
    if scope is not None:
        tokens = world.google.tokens if provider == "google-contacts" else world.graph.tokens
        secrets["refresh_token"] = tokens.grant_refresh(info["email"], scope)
    spec = registry.get(provider)
    env = Env(DEFAULT_RULES, transport=transport or world.transport(), provider=provider)
    linked = await spec.link(LinkRequest(info["email"], options, secrets), env)
    view = AccountView(1, linked.config, linked.secret, linked.remote_id, info["email"])
    view.on_rotate = lambda token: linked.secret.__setitem__("refresh_token", token)
    return spec, view, env


def by_id(changes: ContactChanges) -> dict[str, Any]:
    return {r.record_id: r for r in changes.records}


# --- the specs ------------------------------------------------------------------------------------------------------

def test_both_sources_are_contacts_only_providers_with_a_choice_of_features():
    for key, default in (("google-contacts", "contacts,directory"), ("graph-contacts", "contacts,directory")):
        spec = registry.get(key)
        assert spec.roles == frozenset({CONTACTS}) and spec.calendar_role is None
        assert spec.capabilities == CONTACTS_ONLY and spec.contacts is not None
        assert next(o for o in spec.options if o.name == "features").default == default
        with pytest.raises(ConfigError):
            spec.connector(AccountView(1, {}, {}, ""), Env(DEFAULT_RULES))
    assert sign_in({"features": "people"}).scope == "offline_access People.Read"
    assert sign_in({}).scope == "offline_access Contacts.Read User.Read.All"
    with pytest.raises(ConfigError):
        google_people.parse_features("contacts,calendars")
    world = SandboxWorld()
    described = world.describe(BASE, [world.add_user("ada@example.com", "Ada Lovelace")])
    lines = described["users"][0]["contacts_link"]       # how an admin links them by hand
    assert set(lines) == {"google-contacts", "graph-contacts"}
    assert "zoomcal account add graph-contacts --user ada@example.com" in lines["graph-contacts"]
    assert described["google_people_api_base"] == f"{BASE}/google/people"


# --- Google ---------------------------------------------------------------------------------------------------------

async def test_google_lists_every_collection_page_by_page_then_only_what_changed(world):
    world, ada = world
    spec, view, env = await link(world, ada, "google-contacts", "contacts,other,directory")
    source = spec.contacts(view, env)
    source.page_size = 2
    full = await source.changes(None)
    assert full.complete and full.removed == [] and full.rejected == []
    records = by_id(full)
    kinds = sorted((i.split(":")[0], r.kind) for i, r in records.items())
    assert kinds == [("contacts", CONTACT)] * 3 + [("directory", USER)] * 2 + [("other", OTHER)] * 2
    named = {r.display_name: r for r in full.records}
    assert named["Margaret Hamilton"].emails == ("margaret@apollo.example", "maggie.h@home.example")
    assert named["Charles Babbage"].emails == () and named["Charles Babbage"].phones == ("+44 20 7946 0018",)
    assert named["Émilie du Châtelet"].emails == ("Emilie.DuChatelet@BÜCHER.example",)     # as given
    assert named["Ada Lovelace"].emails == ("ada@example.com", "ada.lovelace@example.com")
    assert ("MARGARET@Apollo.example",) in [r.emails for r in full.records if r.kind == OTHER]
    assert full.api_calls == 2 + 1 + 1          # two pages of contacts, one of directory people, one of others
    assert set(json.loads(full.cursor)["tokens"]) == {"contacts", "other", "directory"}
    assert source.features == {"contacts": (google_people.AUTH + "contacts.readonly",),
                               "other": (google_people.AUTH + "contacts.other.readonly",),
                               "directory": (google_people.AUTH + "directory.readonly",)}

    book = world.google.people
    margaret = next(p for p in book.contacts["ada@example.com"].people.values()
                    if p.get("names", [{}])[0].get("givenName") == "Margaret")
    charles = next(p for p in book.contacts["ada@example.com"].people.values()
                   if p.get("names", [{}])[0].get("givenName") == "Charles")
    book.change("contacts", "ada@example.com", margaret["resourceName"], emails=["margaret@nasa.example"])
    book.delete("contacts", "ada@example.com", charles["resourceName"])
    new = book.add_contact("ada@example.com", "Grace", "Hopper", ["Grace@Navy.example"])
    book.add_profile("hedy@example.com", "Hedy Lamarr")
    since = await source.changes(full.cursor)
    assert not since.complete and since.rejected == []
    assert sorted(by_id(since)) == sorted([f"contacts:{margaret['resourceName']}", f"contacts:{new['resourceName']}",
                                           next(i for i, r in by_id(since).items() if r.display_name == "Hedy Lamarr")])
    assert by_id(since)[f"contacts:{margaret['resourceName']}"].emails == ("margaret@nasa.example",)
    assert since.removed == [f"contacts:{charles['resourceName']}"]
    quiet = await source.changes(since.cursor)
    assert (quiet.records, quiet.removed, quiet.complete) == ([], [], False)
    await source.aclose()


async def test_google_lists_everything_again_when_a_sync_token_expired(world):
    world, ada = world
    spec, view, env = await link(world, ada, "google-contacts")
    source = spec.contacts(view, env)
    full = await source.changes(None)
    book = world.google.people
    book.add_contact("ada@example.com", "Grace", "Hopper", ["grace@navy.example"])
    book.expire_sync_tokens("example.com")          # the directory's token only
    again = await source.changes(full.cursor)
    assert again.complete and again.removed == []
    assert len(again.records) == len(full.records) + 1
    assert {r.record_id for r in full.records} < {r.record_id for r in again.records}
    # seven days after a full listing its tokens are no longer taken, however often they were used since
    now = [book.clock()]
    book.clock = lambda: now[0]
    base = await source.changes(None)
    now[0] += 5 * 86400
    mid = await source.changes(base.cursor)
    assert not mid.complete
    now[0] += 3 * 86400
    assert (await source.changes(mid.cursor)).complete
    # a cursor for other features, or none that can be read: a complete listing
    others = google_people.GooglePeopleSource(source.api, ["contacts"])
    assert (await others.changes(mid.cursor)).complete
    assert (await source.changes("not json")).complete
    await source.aclose()


async def test_google_rejects_a_record_it_cannot_read_and_reads_the_rest(world):
    world, ada = world
    tampered = Tamper(world.transport(), "/people/me/connections", "connections",
                      ["not a person", {"names": [{"displayName": "No resource name"}]},
                       {"resourceName": "people/c1", "emailAddresses": "odd@example.com",
                        "names": [{"displayName": "Odd"}]}])
    spec, view, env = await link(world, ada, "google-contacts", "contacts", transport=tampered)
    changes = await spec.contacts(view, env).changes(None)
    assert [reason.split(":")[0] for _, reason in changes.rejected] == ["contacts", "contacts"]
    assert all(record_id == "" for record_id, _ in changes.rejected)
    assert len(changes.records) == 4                  # the three seeded contacts, and the odd one without addresses
    assert by_id(changes)["contacts:people/c1"].emails == ()


async def test_google_linking_asks_the_grant_for_the_scope_of_every_feature(world):
    world, ada = world
    readonly = google_people.AUTH + "contacts.readonly"
    with pytest.raises(AuthExpired):       # the directory is read by default, and this grant cannot
        await link(world, ada, "google-contacts", scope=readonly)
    spec, view, env = await link(world, ada, "google-contacts", "contacts", scope=readonly)
    assert view.config["features"] == "contacts"
    assert len((await spec.contacts(view, env).changes(None)).records) == 3
    assert await spec.revoke(view, env) == "grant revoked"
    with pytest.raises(AuthExpired):
        await spec.check(view, env)


# --- Microsoft Graph --------------------------------------------------------------------------------------------------

async def test_graph_lists_the_directory_and_contacts_then_only_what_changed(world):
    world, ada = world
    directory = world.graph.directory
    leaving = directory.add_user("kai@example.com", "Kai Lund")
    spec, view, env = await link(world, ada, "graph-contacts")
    source = spec.contacts(view, env)
    source.page_size = 2
    full = await source.changes(None)
    assert full.complete and full.rejected == [] and full.removed == []
    named = {r.display_name: r for r in full.records}
    assert named["Alan Turing"].kind == USER and named["Alan Turing"].emails == ("alan@example.com",
                                                                                  "alan.turing@example.com")
    assert named["Margaret Hamilton"].kind == CONTACT and named["Charles Babbage"].emails == ()
    assert all(r.record_id.startswith(("directory:", "contacts:")) for r in full.records) and len(full.records) == 6
    assert full.api_calls == 2 + 2             # two pages of users, two of contacts
    alan = directory.user("alan@example.com")
    directory.update_user("alan@example.com", otherMails=["alan@bletchley.example"])     # only this comes back
    directory.remove_user("kai@example.com")
    grace = directory.add_user("grace@example.com", "Grace Hopper")
    folder = directory.folder("ada@example.com")
    margaret = next(c for c in folder.values() if c["givenName"] == "Margaret")
    charles = next(c for c in folder.values() if c["givenName"] == "Charles")
    directory.change_contact("ada@example.com", charles["id"], emailAddresses=["charles@engine.example"])
    directory.delete_contact("ada@example.com", margaret["id"])
    since = await source.changes(full.cursor)
    assert not since.complete and since.rejected == []
    records = by_id(since)
    assert set(records) == {f"directory:{alan['id']}", f"directory:{grace['id']}", f"contacts:{charles['id']}"}
    # a changed user is read whole: every address, not just the one that changed
    assert records[f"directory:{alan['id']}"].emails == ("alan@example.com", "alan.turing@example.com",
                                                         "alan@bletchley.example")
    assert records[f"directory:{alan['id']}"].display_name == "Alan Turing"
    assert records[f"contacts:{charles['id']}"].emails == ("charles@engine.example",)
    assert sorted(since.removed) == sorted([f"directory:{leaving['id']}", f"contacts:{margaret['id']}"])
    quiet = await source.changes(since.cursor)
    assert (quiet.records, quiet.removed, quiet.complete) == ([], [], False)
    await source.aclose()


async def test_graph_lists_everything_again_when_a_delta_link_is_refused(world):
    world, ada = world
    spec, view, env = await link(world, ada, "graph-contacts")
    source = spec.contacts(view, env)
    full = await source.changes(None)
    world.graph.directory.expire_delta_tokens()       # 410: resyncRequired, SyncStateNotFound
    again = await source.changes(full.cursor)
    assert again.complete and {r.record_id for r in again.records} == {r.record_id for r in full.records}
    now = [world.graph.directory.clock()]
    world.graph.directory.clock = lambda: now[0]
    base = await source.changes(None)
    now[0] += 8 * 86400                               # the users' link is 400 syncStateNotFound by now
    late = await source.changes(base.cursor)
    assert late.complete and len(late.records) == len(full.records)
    await source.aclose()


async def test_graph_people_are_listed_in_full_and_those_who_left_are_removed(world):
    world, ada = world
    spec, view, env = await link(world, ada, "graph-contacts", "people")
    source = spec.contacts(view, env)
    assert source.features == {"people": ("People.Read",)}
    first = await source.changes(None)
    assert first.complete and {r.kind for r in first.records} == {RELEVANT}
    margaret = next(c for c in world.graph.directory.folder("ada@example.com").values()
                    if c["givenName"] == "Margaret")
    world.graph.directory.delete_contact("ada@example.com", margaret["id"])
    second = await source.changes(first.cursor)
    assert not second.complete and second.removed == [f"people:{margaret['id']}"]
    assert {r.record_id for r in second.records} == {r.record_id for r in first.records} - {f"people:{margaret['id']}"}
    await source.aclose()


async def test_graph_rejects_a_record_it_cannot_read_and_reads_the_rest(world):
    world, ada = world
    tampered = Tamper(world.transport(), "/contacts/delta", "value",
                      [42, {"displayName": "no id"}, {"id": "odd", "emailAddresses": [{"address": 7}, "x", None]}])
    spec, view, env = await link(world, ada, "graph-contacts", "contacts", transport=tampered)
    changes = await spec.contacts(view, env).changes(None)
    assert [(i, reason.split(":")[0]) for i, reason in changes.rejected] == [("", "contacts"), ("", "contacts")]
    assert len(changes.records) == 4 and by_id(changes)["contacts:odd"].emails == ()


async def test_graph_linking_checks_the_permission_of_every_feature(world):
    world, ada = world
    with pytest.raises(AuthExpired):         # the directory's delta takes User.Read.All
        await link(world, ada, "graph-contacts", scope="Contacts.Read User.ReadBasic.All offline_access")
    spec, view, env = await link(world, ada, "graph-contacts", "contacts", scope="Contacts.Read offline_access")
    assert view.config == {"api_base": f"{BASE}/graph/v1.0", "token_url": f"{BASE}/graph/oauth2/v2.0/token",
                           "mailbox": "ada@example.com", "features": "contacts"}
    source = spec.contacts(view, env)
    assert source.features == {"contacts": ("Contacts.Read",)}
    assert len((await source.changes(None)).records) == 3
    await source.aclose()


# --- the mapping ------------------------------------------------------------------------------------------------------

def test_a_google_person_reports_every_address_as_given_the_primary_first():
    raw = {"resourceName": "people/c9", "etag": "%E", "names": [
        {"displayName": "Other Name"}, {"metadata": {"primary": True}, "displayName": "Grace Hopper",
                                        "givenName": "Grace", "familyName": "Hopper"}],
           "emailAddresses": [{"value": "g.hopper@navy.example"}, {"metadata": {"primary": True}, "value": "GRACE@X"},
                              {"value": "g.hopper@navy.example"}, {"value": 5}, {"type": "work"}],
           "metadata": {"sources": [{"type": "CONTACT", "id": "9"}]}}
    record = people_mapping.person_record(raw, "contacts:people/c9", CONTACT)
    assert record.emails == ("GRACE@X", "g.hopper@navy.example")
    assert (record.display_name, record.given_name, record.family_name, record.etag) == (
        "Grace Hopper", "Grace", "Hopper", "%E")
    shared = {**raw, "metadata": {"sources": [{"type": "DOMAIN_CONTACT", "id": "1"}]}}
    assert people_mapping.person_record(shared, "directory:people/c9", USER).kind == CONTACT
    assert people_mapping.is_deleted({"resourceName": "people/c9", "metadata": {"deleted": True}})
    for bad in ("text", {"names": []}, {"resourceName": ""}):
        with pytest.raises(Exception) as caught:
            people_mapping.person_record(bad, "x", CONTACT)
        assert caught.type.__name__ == "InvalidItem"


def test_a_graph_user_reports_mail_its_smtp_proxy_addresses_and_other_mails():
    raw = {"id": "u1", "displayName": "Grace Hopper", "mail": "Grace@example.com",
           "userPrincipalName": "gh@corp.example",
           "proxyAddresses": ["smtp:grace.hopper@example.com", "SIP:grace@example.com", "SMTP:grace@example.com",
                              "X500:/o=Corp/cn=grace"],
           "otherMails": ["grace@home.example"], "businessPhones": ["+1 555 0100"], "mobilePhone": "+1 555 0101"}
    record = graph_mapping.user_record(raw, "directory:u1")
    assert record.emails == ("Grace@example.com", "grace@example.com", "grace.hopper@example.com",
                             "grace@home.example")      # the sign-in name is not a mailbox, SIP and X500 not e-mail
    assert record.phones == ("+1 555 0100", "+1 555 0101") and record.kind == USER
    assert graph_mapping.user_record({"id": "u2", "mail": None, "proxyAddresses": None}, "directory:u2").emails == ()
    contact = graph_mapping.contact_record({"id": "c1", "@odata.etag": 'W/"1"', "emailAddresses": [
        {"name": "B", "address": "b@x.example"}, {"name": "A", "address": "a@x.example"}]}, "contacts:c1")
    assert contact.emails == ("b@x.example", "a@x.example") and contact.etag == 'W/"1"'
    person = graph_mapping.person_record({"id": "p1", "scoredEmailAddresses": [
        {"address": "Hedy@Film.example", "relevanceScore": 20}], "phones": [{"number": "1"}]}, "people:p1")
    assert (person.emails, person.phones, person.kind) == (("Hedy@Film.example",), ("1",), RELEVANT)
    assert graph_mapping.is_removed({"id": "u1", "@removed": {"reason": "changed"}})
