"""The Google People sandbox driven by Google's own client (google-api-python-client, built from the People discovery
document in ../shared/specs), every answer checked against that document's schemas."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

from specs import SPECS, google_schema, require_specs, validate
from test_sandbox_google_client import SandboxHttp
from zoomcal.sandbox.google_people import CONTACTS, CONTACTS_READONLY, DIRECTORY_READONLY, OTHER_READONLY
from zoomcal.sandbox.world import SandboxWorld

ROOT = "http://sandbox/google/people/"
FIELDS = "names,emailAddresses,phoneNumbers,metadata"
PROFILE = "DIRECTORY_SOURCE_TYPE_DOMAIN_PROFILE"


def people_service(world: SandboxWorld, token: str):
    doc = json.loads((SPECS / "google" / "people.v1.json").read_text())
    doc["rootUrl"] = ROOT
    return build_from_document(doc, http=SandboxHttp(world, token))


@pytest.fixture
def people():
    require_specs()
    world = SandboxWorld()
    world.add_user("ada@example.com", "Ada Lovelace")
    world.add_user("alan@example.com", "Alan Turing")
    world.add_user("kai@elsewhere.example", "Kai Other")
    return world, people_service(world, world.google.tokens.issue("ada@example.com")["access_token"])


def schema(name: str) -> dict:
    return google_schema(name, "people.v1.json")


def connections(service, **params) -> dict:
    page = service.people().connections().list(resourceName="people/me", **params).execute()
    validate(page, schema("ListConnectionsResponse"))
    return page


def refused(call) -> tuple[int, dict]:
    with pytest.raises(HttpError) as caught:
        call.execute()
    return caught.value.resp.status, json.loads(caught.value.content)["error"]


def emails(person: dict) -> list[str]:
    return [e["value"] for e in person.get("emailAddresses", [])]


def test_connections_page_by_page_with_the_fields_asked_for(people):
    _world, service = people
    first = connections(service, personFields=FIELDS, pageSize=2)
    assert len(first["connections"]) == 2 and first["totalItems"] == 3 and "nextSyncToken" not in first
    rest = connections(service, personFields=FIELDS, pageSize=2, pageToken=first["nextPageToken"])
    assert "nextPageToken" not in rest
    listed = {p["names"][0]["displayName"]: p for p in first["connections"] + rest["connections"]}
    # the seeded contacts: two addresses (the primary first), none at all, capitals and an internationalised domain
    assert emails(listed["Margaret Hamilton"]) == ["margaret@apollo.example", "maggie.h@home.example"]
    assert listed["Margaret Hamilton"]["emailAddresses"][0]["metadata"]["primary"] is True
    assert "emailAddresses" not in listed["Charles Babbage"]
    assert emails(listed["Émilie du Châtelet"]) == ["Emilie.DuChatelet@BÜCHER.example"]
    source = listed["Margaret Hamilton"]["metadata"]["sources"][0]
    assert source["type"] == "CONTACT"
    assert listed["Margaret Hamilton"]["resourceName"] == f"people/c{int(source['id'], 16)}"   # the id in hex
    only_names = connections(service, personFields="names")
    assert all(set(p) == {"resourceName", "etag", "names"} for p in only_names["connections"])
    status, error = refused(service.people().connections().list(resourceName="people/me"))
    assert status == 400 and error["status"] == "INVALID_ARGUMENT" and "personFields" in error["message"]
    assert refused(service.people().connections().list(resourceName="people/me", personFields="names,nope"))[0] == 400
    assert refused(service.people().connections().list(resourceName="people/someone", personFields="names"))[0] == 400
    # a page token keeps the parameters of its first call
    status, error = refused(service.people().connections().list(resourceName="people/me", personFields="names",
                                                                 pageSize=2, pageToken=first["nextPageToken"]))
    assert status == 400 and error["status"] == "INVALID_ARGUMENT"


def test_a_sync_token_lists_what_changed_and_what_was_deleted(people):
    world, service = people
    full = connections(service, personFields=FIELDS, requestSyncToken=True)
    token = full["nextSyncToken"]
    made = service.people().createContact(body={"names": [{"givenName": "Grace", "familyName": "Hopper"}],
                                                "emailAddresses": [{"value": "GRACE@Navy.example"}]},
                                          personFields=FIELDS).execute()
    validate(made, schema("Person"))
    margaret = next(p for p in full["connections"] if p["names"][0]["givenName"] == "Margaret")
    changed = service.people().updateContact(
        resourceName=margaret["resourceName"], updatePersonFields="emailAddresses", personFields=FIELDS,
        body={"etag": margaret["etag"], "metadata": margaret["metadata"],
              "emailAddresses": [{"value": "mh@apollo.example"}]}).execute()
    assert emails(changed) == ["mh@apollo.example"] and changed["names"] == margaret["names"]
    # the etag the contact had before is stale now
    status, error = refused(service.people().updateContact(
        resourceName=margaret["resourceName"], updatePersonFields="names", body={
            "etag": margaret["etag"], "metadata": margaret["metadata"], "names": [{"givenName": "M"}]}))
    assert status == 400 and error["status"] == "FAILED_PRECONDITION"
    charles = next(p for p in full["connections"] if p["names"][0]["givenName"] == "Charles")
    assert service.people().deleteContact(resourceName=charles["resourceName"]).execute() == {}
    since = connections(service, personFields=FIELDS, syncToken=token, requestSyncToken=True)
    by_name = {p["resourceName"]: p for p in since["connections"]}
    assert set(by_name) == {made["resourceName"], margaret["resourceName"], charles["resourceName"]}
    assert emails(by_name[made["resourceName"]]) == ["GRACE@Navy.example"]
    assert by_name[charles["resourceName"]]["metadata"]["deleted"] is True
    assert "names" not in by_name[charles["resourceName"]]
    quiet = connections(service, personFields=FIELDS, syncToken=since["nextSyncToken"], requestSyncToken=True)
    assert "connections" not in quiet and quiet["nextSyncToken"]
    # the sync token keeps the parameters of its first call
    status, _ = refused(service.people().connections().list(resourceName="people/me", personFields="names",
                                                             syncToken=quiet["nextSyncToken"]))
    assert status == 400
    # someone else's change is not in this user's listing
    world.google.people.add_contact("alan@example.com", "Only", "Alan's", ["only@alan.example"])
    assert "connections" not in connections(service, personFields=FIELDS, syncToken=quiet["nextSyncToken"])


def test_an_expired_sync_token_is_refused_as_google_refuses_it(people):
    world, service = people
    token = connections(service, personFields=FIELDS, requestSyncToken=True)["nextSyncToken"]
    world.google.people.expire_sync_tokens("ada@example.com")
    status, error = refused(service.people().connections().list(resourceName="people/me", personFields=FIELDS,
                                                                 syncToken=token))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")
    assert error["details"][0]["reason"] == "EXPIRED_SYNC_TOKEN"
    assert refused(service.people().connections().list(resourceName="people/me", personFields=FIELDS,
                                                       syncToken="not-a-token"))[1]["status"] == "FAILED_PRECONDITION"
    # tokens last seven days from the full listing they descend from, however often they were used since
    now = [1_900_000_000.0]
    world.google.people.clock = lambda: now[0]
    token = connections(service, personFields=FIELDS, requestSyncToken=True)["nextSyncToken"]
    now[0] += 6 * 86400
    token = connections(service, personFields=FIELDS, syncToken=token, requestSyncToken=True)["nextSyncToken"]
    now[0] += 2 * 86400
    assert refused(service.people().connections().list(resourceName="people/me", personFields=FIELDS,
                                                       syncToken=token))[0] == 400


def test_other_contacts_take_a_read_mask_and_a_sync_token(people):
    world, service = people
    others = service.otherContacts()
    page = others.list(readMask="names,emailAddresses", requestSyncToken=True).execute()
    validate(page, schema("ListOtherContactsResponse"))
    assert sorted(e for p in page["otherContacts"] for e in emails(p)) == ["MARGARET@Apollo.example",
                                                                            "otto@isotype.example"]
    assert all(p["resourceName"].startswith("otherContacts/c") for p in page["otherContacts"])
    assert refused(others.list())[0] == 400
    assert refused(others.list(readMask="names,birthdays"))[0] == 400        # not a field of other contacts
    world.google.people.add_other("ada@example.com", "Hedy Lamarr", "hedy@example.org")
    since = others.list(readMask="names,emailAddresses", syncToken=page["nextSyncToken"]).execute()
    assert [emails(p) for p in since["otherContacts"]] == [["hedy@example.org"]]


def test_the_directory_lists_the_callers_domain(people):
    world, service = people
    listed = service.people().listDirectoryPeople(readMask=FIELDS, sources=[PROFILE], requestSyncToken=True).execute()
    validate(listed, schema("ListDirectoryPeopleResponse"))
    assert sorted(emails(p)[0] for p in listed["people"]) == ["ada@example.com", "alan@example.com"]
    ada = next(p for p in listed["people"] if emails(p)[0] == "ada@example.com")
    assert emails(ada) == ["ada@example.com", "ada.lovelace@example.com"]
    assert ada["metadata"]["sources"][0]["type"] == "DOMAIN_PROFILE" and ada["resourceName"][7:].isdigit()
    assert refused(service.people().listDirectoryPeople(readMask=FIELDS))[0] == 400          # sources required
    assert refused(service.people().listDirectoryPeople(sources=[PROFILE]))[0] == 400       # readMask required
    people_ = world.google.people
    people_.add_profile("new@example.com", "New Hire")
    alan = people_.find("directory", "example.com", "alan@example.com")
    people_.delete("directory", "example.com", alan["resourceName"])
    since = service.people().listDirectoryPeople(readMask=FIELDS, sources=[PROFILE],
                                                 syncToken=listed["nextSyncToken"]).execute()
    validate(since, schema("ListDirectoryPeopleResponse"))
    assert {p["resourceName"]: p.get("metadata", {}).get("deleted", False) for p in since["people"]} == {
        alan["resourceName"]: True,
        people_.find("directory", "example.com", "new@example.com")["resourceName"]: False}
    elsewhere = people_service(world, world.google.tokens.issue("someone@gmail.example")["access_token"])
    status, error = refused(elsewhere.people().listDirectoryPeople(readMask=FIELDS, sources=[PROFILE]))
    assert (status, error["status"]) == (400, "FAILED_PRECONDITION")     # not a Workspace user


def token_answer(world: SandboxWorld, refresh: str) -> dict:
    async def ask() -> httpx.Response:
        async with httpx.AsyncClient(transport=world.transport()) as client:
            return await client.post("http://sandbox/google/token", data={
                "grant_type": "refresh_token", "refresh_token": refresh, "client_id": world.google.client_id,
                "client_secret": world.google.client_secret})
    answer = anyio.run(ask)
    assert answer.status_code == 200
    return answer.json()


def test_each_method_needs_one_of_its_scopes_and_the_token_answer_names_them(people):
    world, _service = people
    default = token_answer(world, world.google.tokens.grant_refresh("ada@example.com"))
    assert {CONTACTS_READONLY, OTHER_READONLY, DIRECTORY_READONLY} <= set(default["scope"].split())
    narrow = token_answer(world, world.google.tokens.grant_refresh("ada@example.com", scope=CONTACTS_READONLY))
    assert narrow["scope"] == CONTACTS_READONLY
    service = people_service(world, narrow["access_token"])
    assert connections(service, personFields="names")["totalItems"] == 3
    for call in (service.otherContacts().list(readMask="names"),
                 service.people().listDirectoryPeople(readMask="names", sources=[PROFILE]),
                 service.people().createContact(body={"names": [{"givenName": "X"}]})):
        status, error = refused(call)
        assert (status, error["status"]) == (403, "PERMISSION_DENIED")
        assert error["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    writer = people_service(world, token_answer(world, world.google.tokens.grant_refresh(
        "ada@example.com", scope=CONTACTS))["access_token"])
    assert writer.people().createContact(body={"names": [{"givenName": "X"}]}).execute()["resourceName"]
    assert connections(writer, personFields="names")["totalItems"] == 4       # `contacts` reads them too
