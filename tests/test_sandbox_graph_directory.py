"""The Graph sandbox's directory, contacts and people driven by Microsoft's own SDK (msgraph-sdk) and plain HTTP,
answers checked against graph-v1.0-users.yml, -personalcontacts.yml, -people.yml and -contacts-functions.yml."""

from __future__ import annotations

import httpx
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.contact import Contact
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.users.item.contacts.delta.delta_request_builder import (
    DeltaRequestBuilder as ContactsDeltaRequestBuilder,
)
from msgraph.generated.users.item.people.people_request_builder import PeopleRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from specs import graph_response_schema, graph_schema, require_specs, validate
from test_sandbox_graph import BASE, event_body, sdk
from zoomcal.sandbox.world import SandboxWorld

pytestmark = pytest.mark.anyio
USERS = "graph-v1.0-users.yml"
FUNCTIONS = "graph-v1.0-contacts-functions.yml"
CONTACTS = "graph-v1.0-personalcontacts.yml"
PEOPLE = "graph-v1.0-people.yml"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def client_for(world: SandboxWorld, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=BASE, transport=world.transport(), headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def directory():
    require_specs()
    world = SandboxWorld()
    for email, name in (("kai@example.com", "Kai Lund"), ("ada@example.com", "Ada Lovelace"),
                        ("alan@example.com", "Alan Turing")):
        world.add_user(email, name)
    http = client_for(world, world.graph.tokens.issue("kai@example.com")["access_token"])
    return world, http, sdk(world, http)


def check(answer: dict, file: str, path: str) -> None:
    validate(answer, graph_response_schema(file, path))


async def test_users_page_with_the_properties_selected(directory):
    world, http, client = directory
    world.graph.directory.update_user("ada@example.com", otherMails=["ada@personal.example"])
    plain = (await http.get("/users")).json()
    check(plain, USERS, "/users")
    assert set(plain["value"][0]) == {"businessPhones", "displayName", "givenName", "jobTitle", "mail",
                                      "mobilePhone", "officeLocation", "preferredLanguage", "surname",
                                      "userPrincipalName", "id"}          # proxyAddresses only when selected
    q = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(select=["id", "mail", "proxyAddresses",
                                                                          "otherMails"], top=2)
    first = await client.users.get(RequestConfiguration(query_parameters=q))
    assert len(first.value) == 2 and first.odata_next_link
    rest = await client.users.with_url(first.odata_next_link).get()
    assert rest.odata_next_link is None
    found = {u.mail: u for u in first.value + rest.value}
    assert sorted(found) == ["ada@example.com", "alan@example.com", "kai@example.com"]
    assert found["ada@example.com"].proxy_addresses == ["SMTP:ada@example.com", "smtp:ada.lovelace@example.com"]
    assert found["ada@example.com"].other_mails == ["ada@personal.example"]
    filtered = (await http.get("/users", params={"$filter": "mail eq 'ALAN@example.com'", "$select": "id,mail"}))
    assert [u["mail"] for u in filtered.json()["value"]] == ["alan@example.com"]
    ids = [found[m].id for m in ("ada@example.com", "kai@example.com")]
    by_ids = await http.get("/users", params={"$filter": f"id in ('{ids[0]}', '{ids[1]}')", "$select": "mail"})
    assert sorted(u["mail"] for u in by_ids.json()["value"]) == ["ada@example.com", "kai@example.com"]
    assert (await http.get("/users", params={"$select": "id,nope"})).status_code == 400
    me = await client.me.get()
    assert me.user_principal_name == "kai@example.com" and me.display_name == "Kai Lund"
    one = (await http.get("/users/ADA@example.com")).json()
    validate(one, graph_schema("microsoft.graph.user", USERS))
    assert one["id"] == found["ada@example.com"].id


async def test_users_delta_reports_changed_properties_and_removals(directory):
    world, http, client = directory
    q = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=["id", "displayName", "mail",
                                                                          "proxyAddresses"])
    first = await client.users.delta.get(RequestConfiguration(query_parameters=q,
                                                              headers={"Prefer": "odata.maxpagesize=2"}))
    assert len(first.value) == 2 and first.odata_next_link and first.odata_delta_link is None
    rest = await client.users.delta.with_url(first.odata_next_link).get()
    assert len(rest.value) == 1 and rest.odata_delta_link
    ids = {u.mail: u.id for u in first.value + rest.value}
    people = world.graph.directory
    people.update_user("ada@example.com", displayName="Ada King", jobTitle="Countess")   # jobTitle: not selected
    people.update_user("alan@example.com", jobTitle="Mathematician")                      # nothing selected changed
    people.remove_user("kai@example.com")
    people.add_user("grace@example.com", "Grace Hopper", ("amazing.grace@example.com",))
    raw = (await http.get(rest.odata_delta_link)).json()
    check(raw, FUNCTIONS, "/users/microsoft.graph.delta()")
    by_id = {u["id"]: u for u in raw["value"]}
    assert by_id[ids["ada@example.com"]] == {"id": ids["ada@example.com"], "displayName": "Ada King"}
    assert ids["alan@example.com"] not in by_id
    assert by_id[ids["kai@example.com"]]["@removed"] == {"reason": "changed"}        # in the recycle bin
    grace = next(u for u in raw["value"] if u.get("mail") == "grace@example.com")
    assert grace["proxyAddresses"] == ["SMTP:grace@example.com", "smtp:amazing.grace@example.com"]
    again = await client.users.delta.with_url(raw["@odata.deltaLink"]).get()
    assert again.value == [] and again.odata_delta_link
    people.remove_user("ada@example.com", permanent=True)
    gone = (await http.get(again.odata_delta_link)).json()["value"]
    assert gone == [{"@odata.type": "#microsoft.graph.user", "id": ids["ada@example.com"],
                     "@removed": {"reason": "deleted"}}]


async def test_users_delta_links_expire(directory):
    world, http, _client = directory
    now = [1_900_000_000.0]
    world.graph.directory.clock = lambda: now[0]
    link = (await http.get("/users/delta", params={"$select": "id,mail"})).json()["@odata.deltaLink"]
    now[0] += 8 * 86400
    late = await http.get(link)
    assert (late.status_code, late.json()["error"]["code"]) == (400, "syncStateNotFound")
    link = (await http.get("/users/delta()", params={"$select": "id,mail"})).json()["@odata.deltaLink"]
    world.graph.directory.expire_delta_tokens()
    dropped = await http.get(link)
    assert (dropped.status_code, dropped.json()["error"]["code"]) == (410, "resyncRequired")


async def test_contacts_and_their_delta(directory):
    world, http, client = directory
    contacts = client.users.by_user_id("kai@example.com").contacts
    listed = (await http.get("/me/contacts")).json()
    check(listed, CONTACTS, "/users/{user-id}/contacts")
    by_name = {c["displayName"]: c for c in listed["value"]}
    assert [e["address"] for e in by_name["Margaret Hamilton"]["emailAddresses"]] == [
        "margaret@apollo.example", "maggie.h@home.example"]
    assert by_name["Charles Babbage"]["emailAddresses"] == []
    assert by_name["Émilie du Châtelet"]["emailAddresses"][0]["address"] == "Emilie.DuChatelet@BÜCHER.example"
    q = ContactsDeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=["displayName", "emailAddresses"])
    first = await contacts.delta.get(RequestConfiguration(query_parameters=q,
                                                          headers={"Prefer": "odata.maxpagesize=2"}))
    assert len(first.value) == 2 and first.odata_next_link
    rest = await contacts.delta.with_url(first.odata_next_link).get()
    assert len(rest.value) == 1 and rest.odata_delta_link
    assert set(rest.value[0].additional_data) <= {"@odata.etag"} and rest.value[0].given_name is None  # $select kept
    made = await contacts.post(Contact(given_name="Grace", surname="Hopper", email_addresses=[
        EmailAddress(name="Grace", address="grace@navy.example")]))
    assert made.display_name == "Grace Hopper" and made.id
    patched = await http.patch(f"/me/contacts/{by_name['Charles Babbage']['id']}",
                               json={"emailAddresses": [{"address": "charles@engine.example"}]})
    assert patched.status_code == 200
    assert (await http.delete(f"/me/contacts/{by_name['Margaret Hamilton']['id']}")).status_code == 204
    raw = (await http.get(rest.odata_delta_link)).json()
    check(raw, FUNCTIONS, "/users/{user-id}/contacts/microsoft.graph.delta()")
    seen = {c["id"]: c for c in raw["value"]}
    assert set(seen) == {made.id, by_name["Charles Babbage"]["id"], by_name["Margaret Hamilton"]["id"]}
    assert seen[by_name["Margaret Hamilton"]["id"]]["@removed"] == {"reason": "deleted"}
    assert seen[by_name["Charles Babbage"]["id"]]["emailAddresses"] == [
        {"name": "charles@engine.example", "address": "charles@engine.example"}]
    world.graph.directory.expire_delta_tokens()
    stale = await http.get(raw["@odata.deltaLink"])
    assert (stale.status_code, stale.json()["error"]["code"]) == (410, "SyncStateNotFound")
    # only the owner reads a mailbox's contacts
    assert (await http.get("/users/ada@example.com/contacts")).status_code == 403
    assert (await http.get("/users/nobody@example.com/contacts")).status_code == 404


async def test_people_most_relevant_first(directory):
    world, http, client = directory
    assert (await http.post("/me/events", json=event_body(
        "Review", "2026-06-01T10:00:00", "2026-06-01T11:00:00",
        attendees=[{"emailAddress": {"address": "Hedy@Film.example", "name": "Hedy Lamarr"}}]))).status_code == 201
    raw = (await http.get("/me/people", params={"$top": 50})).json()
    check(raw, PEOPLE, "/users/{user-id}/people")
    kinds = [(p["displayName"], p["personType"]["subclass"]) for p in raw["value"]]
    assert kinds[0] == ("Hedy Lamarr", "ImplicitContact")          # met with: the most relevant
    assert ("Ada Lovelace", "OrganizationUser") in kinds and ("Margaret Hamilton", "PersonalContact") in kinds
    assert "Kai Lund" not in [name for name, _ in kinds]           # not oneself
    q = PeopleRequestBuilder.PeopleRequestBuilderGetQueryParameters(top=2, select=["displayName",
                                                                                   "scoredEmailAddresses"])
    page = await client.me.people.get(RequestConfiguration(query_parameters=q))
    assert len(page.value) == 2 and page.odata_next_link
    assert page.value[0].scored_email_addresses[0].address == "Hedy@Film.example"      # as it was written
    scores = [a["relevanceScore"] for p in raw["value"] for a in p["scoredEmailAddresses"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[1]


async def token_answer(world: SandboxWorld, refresh: str, scope: str | None = None) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": world.graph.client_id,
            "client_secret": world.graph.client_secret}
    if scope:
        form["scope"] = scope
    async with httpx.AsyncClient(transport=world.transport()) as http:
        return await http.post("http://sandbox/graph/oauth2/v2.0/token", data=form)


async def test_each_route_needs_its_permission_and_the_token_answer_names_the_grant(directory):
    world, _http, _client = directory
    tokens = world.graph.tokens
    default = (await token_answer(world, tokens.grant_refresh("kai@example.com"))).json()
    assert {"Contacts.Read", "People.Read", "User.Read.All"} <= set(default["scope"].split())
    # the next refresh token carries the same grant; a `scope` in the request narrows it
    narrowed = (await token_answer(world, default["refresh_token"], "Contacts.Read")).json()
    assert narrowed["scope"] == "Contacts.Read"
    refused = await token_answer(world, narrowed["refresh_token"], "Contacts.Read User.Read.All")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    contacts_only = client_for(world, narrowed["access_token"])
    assert (await contacts_only.get("/me/contacts/delta")).status_code == 200
    for path in ("/users/delta", "/users", "/me/people"):
        answer = await contacts_only.get(path)
        assert answer.status_code == 403, path
    assert (await contacts_only.get("/users/delta")).json()["error"]["code"] == "Authorization_RequestDenied"
    assert (await contacts_only.post("/me/contacts", json={"givenName": "X"})).status_code == 403   # read only
    basic_grant = (await token_answer(world, tokens.grant_refresh("kai@example.com", "User.ReadBasic.All"))).json()
    basic = client_for(world, basic_grant["access_token"])
    users = (await basic.get("/users", params={"$select": "id,mail,proxyAddresses"})).json()["value"]
    ada = next(u for u in users if u["mail"] == "ada@example.com")
    assert ada["proxyAddresses"] is None            # outside the basic profile
    assert (await basic.get("/users/delta")).status_code == 403
    for client in (contacts_only, basic):
        await client.aclose()
