"""The contacts service end to end: Zoom's users (with contact groups and presence) and a CardDAV address book on
the real Radicale, resolved into one directory with the tenant's users; search, explain, merge and split kept
across syncs and audited; unmappable records in the sync log and the review queue; scopes granted vs needed."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import select

from conftest import _fresh_pg, link_sandbox_user, make_context
from zoomcal.app import accounts, audit, contacts
from zoomcal.app import sync as app_sync
from zoomcal.app.context import Actor
from zoomcal.app.errors import ConflictError, ForbiddenError
from zoomcal.connectors.caldav.carddav import CardDavSource
from zoomcal.store.models import ContactRecordRow, SyncLogEntry

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def address_book(base: str, user: str) -> str:
    """A fresh address book on the Radicale server (extended MKCOL, RFC 5689)."""
    url = f"{base}/{user}/book-{uuid.uuid4().hex[:8]}/"
    body = ('<?xml version="1.0" encoding="utf-8"?><d:mkcol xmlns:d="DAV:" xmlns:r="urn:ietf:params:xml:ns:carddav">'
            '<d:set><d:prop><d:resourcetype><d:collection/><r:addressbook/></d:resourcetype>'
            '<d:displayname>Friends</d:displayname></d:prop></d:set></d:mkcol>')
    response = httpx.request("MKCOL", url, content=body, auth=(user, "x"),
                             headers={"Content-Type": "application/xml"})
    assert response.status_code == 201, response.text
    return url


def put_card(book: str, user: str, name: str, card: str) -> None:
    response = httpx.put(f"{book}{name}.vcf", content=card.replace("\n", "\r\n"), auth=(user, "x"),
                         headers={"Content-Type": "text/vcard"})
    assert response.status_code in (201, 204), response.text


def vcard(uid: str, name: str, *emails: str, version: str = "3.0", extra: str = "") -> str:
    lines = [f"EMAIL;TYPE=INTERNET{';TYPE=pref' if i == 0 and version == '3.0' else ''}:{e}"
             for i, e in enumerate(emails)] if version == "3.0" else \
        [f"EMAIL{';PREF=1' if i == 0 else ''}:{e}" for i, e in enumerate(emails)]
    return "\n".join(["BEGIN:VCARD", f"VERSION:{version}", f"UID:{uid}", f"FN:{name}", "N:;;;;", *lines,
                      *([extra] if extra else []), "END:VCARD", ""])


@pytest.fixture
def setup(world, tmp_path, radicale):
    ctx = make_context(world, tmp_path)
    ctx.settings.allow_private_urls = True
    ada = link_sandbox_user(ctx, world, "ada@example.com", "Ada Lovelace", "Europe/London")
    link_sandbox_user(ctx, world, "grace@example.com", "Grace Hopper", "America/New_York")
    world.zoom.add_user("alan@example.com", "Alan", "Turing", "Europe/Berlin")           # in Zoom, not in zoomcal
    world.zoom.add_contact_group("Research", ["ada@example.com", "alan@example.com"])
    book = address_book(radicale, "ada")
    linked = asyncio.run(accounts.link(ctx, "ada@example.com", "carddav", {"url": book, "username": "ada"},
                                       {"password": "x"}))
    assert linked.calendar_id is None and linked.provider == "carddav"
    put_card(book, "ada", "alan", vcard("c-alan", "Dr. Alan Turing", "ALAN@example.com", "alan@bletchley.example"))
    put_card(book, "ada", "charles", vcard("c-charles", "Charles Babbage", "charles@engine.example",
                                           version="4.0", extra="TZ:Europe/London"))
    put_card(book, "ada", "nomail", vcard("c-nomail", "No Mail"))
    put_card(book, "ada", "bad", vcard("c-bad", "Bad Address", "charles at engine"))
    put_card(book, "ada", "idn", vcard("c-idn", "Bücher Freund", "Freund@Bücher.example"))
    yield ctx, world, book, ada
    ctx.store.dispose()


async def test_one_directory_from_zoom_and_carddav(setup):
    ctx, world, book, _ada = setup
    report = await contacts.sync(ctx)
    assert report.failed == [] and report.sources == 2          # two Zoom links, one account: read once
    people = {p.email: p for p in contacts.list_people(ctx)}
    assert set(people) == {"ada@example.com", "grace@example.com", "alan@example.com", "charles@engine.example",
                           "freund@xn--bcher-kva.example"}
    ada, alan = people["ada@example.com"], people["alan@example.com"]
    assert ada.user == "ada@example.com" and ada.name == "Ada Lovelace" and ada.status_from == "zoom"
    assert ada.status == "Available" and ada.groups == ["Research"] and ada.zoom_user_id
    # the Zoom user and the address book's card are one person (shared address, any case), Zoom's name wins
    assert alan.name == "Alan Turing" and sorted(alan.sources) == ["carddav", "zoom"]
    assert alan.emails == ["alan@bletchley.example", "alan@example.com"] and alan.timezone == "Europe/Berlin"
    assert people["charles@engine.example"].timezone == "Europe/London"
    # the cards that cannot be a person: in the sync log and the review queue, each with its reason
    reviews = [r for r in app_sync.reviews(ctx) if r.kind == "contact"]
    reasons = {r.field.rsplit("/", 1)[1]: r.zoom["reason"] for r in reviews}
    assert reasons["nomail.vcf"] == "the record has no e-mail address"
    assert "none of the record's addresses is usable" in reasons.values()
    assert any(k == "bad.vcf" and r.zoom["problem"] in ("malformed", "no_address") for r in reviews
               for k in [r.field.rsplit("/", 1)[1]])
    with ctx.store.session() as s:
        logged = [e.message for e in s.scalars(select(SyncLogEntry).where(SyncLogEntry.action == "contacts.unmapped"))]
    assert any("nomail.vcf" in m for m in logged) and any("bad.vcf" in m for m in logged)

    # a second sync changes nothing and adds nothing to the queue
    again = await contacts.sync(ctx)
    assert (again.written, again.changed_people, again.new_problems) == (0, 0, 0)
    assert len([r for r in app_sync.reviews(ctx) if r.kind == "contact"]) == len(reviews)

    # search: by a name word, an address prefix, ranked; the exact address first
    assert [p.email for p in contacts.search(ctx, "tur")] == ["alan@example.com"]
    assert [p.email for p in contacts.search(ctx, "alan@bletchley.example")] == ["alan@example.com"]
    assert contacts.search(ctx, "BÜCHER")[0].email == "freund@xn--bcher-kva.example"
    assert [p.email for p in contacts.search(ctx, "a", 2)] == ["ada@example.com", "alan@example.com"]
    assert contacts.search(ctx, "zzz") == []

    # explain: which records, and why
    why = contacts.explain(ctx, "Alan@Bletchley.example")
    assert {r["source"] for r in why.records} == {"zoom", "carddav"}
    assert [(link["why"], link["address"]) for link in why.links] == [("address", "alan@example.com")]


async def test_changes_at_the_source_follow_incrementally(setup):
    ctx, _world, book, _ada = setup
    await contacts.sync(ctx)
    put_card(book, "ada", "charles", vcard("c-charles", "Charles B.", "charles@engine.example", "cb@ada.example"))
    assert httpx.delete(f"{book}idn.vcf", auth=("ada", "x")).status_code in (200, 204)
    report = await contacts.sync(ctx)
    assert (report.written, report.removed) == (1, 1)
    people = {p.email: p for p in contacts.list_people(ctx)}
    assert people["charles@engine.example"].name == "Charles B." and "freund@xn--bcher-kva.example" not in people
    assert "cb@ada.example" in people["charles@engine.example"].emails


async def test_an_expired_sync_token_lists_the_book_again(radicale):
    book = address_book(radicale, "bob")
    put_card(book, "bob", "one", vcard("u1", "One", "one@example.com"))
    source = CardDavSource(book, username="bob", password="x", allow_private=True)
    try:
        first = await source.changes(None)
        assert first.complete and [r.emails for r in first.records] == [("one@example.com",)]
        stale = "http://radicale.org/ns/sync/" + "0" * 64
        again = await source.changes(stale)
        assert again.complete and [r.record_id for r in again.records] == [r.record_id for r in first.records]
        nothing = await source.changes(first.cursor)
        assert nothing.records == [] and nothing.removed == [] and not nothing.complete
    finally:
        await source.aclose()


async def test_merge_split_and_no_invite_are_kept_across_syncs_and_audited(setup):
    ctx, _world, book, _ada = setup
    await contacts.sync(ctx)
    # the same human in the address book under a private address: a name match is only a suggestion
    put_card(book, "ada", "grace", vcard("c-grace", "Grace Hopper", "amazing.grace@navy.example"))
    await contacts.sync(ctx)
    suggestions = [r for r in app_sync.reviews(ctx) if r.kind == "contact_match"]
    assert [(r.zoom["a"], r.zoom["b"]) for r in suggestions] in (
        [("grace@example.com", "amazing.grace@navy.example")], [("amazing.grace@navy.example", "grace@example.com")])
    assert "amazing.grace@navy.example" not in contacts.explain(ctx, "grace@example.com").person.emails
    # the admin accepts it from the review queue: one person, kept by the next sync
    await app_sync.resolve(ctx, suggestions[0].id, "merge")
    grace = contacts.explain(ctx, "amazing.grace@navy.example")
    assert grace.person.user == "grace@example.com"
    assert any(link["why"] == "merged by hand" for link in grace.links)
    await contacts.sync(ctx)
    assert "amazing.grace@navy.example" in contacts.explain(ctx, "grace@example.com").person.emails
    # split the card from Zoom's Alan: it stands alone, also after the next sync
    alan_card = next(r["key"] for r in contacts.explain(ctx, "alan@example.com").records if r["source"] == "carddav")
    alone = contacts.split(ctx, alan_card)
    assert alone.sources == ["carddav"] and alone.name == "Dr. Alan Turing"     # with its own addresses
    await contacts.sync(ctx)
    zoom_alan = [p for p in contacts.list_people(ctx) if p.sources == ["zoom"] and p.name == "Alan Turing"]
    assert [p.emails for p in zoom_alan] == [["alan@example.com"]]
    assert contacts.explain(ctx, "alan@bletchley.example").person.sources == ["carddav"]
    with pytest.raises(ConflictError):
        contacts.merge(ctx, "ada@example.com", "grace@example.com")        # two users are never one
    contacts.set_invitable(ctx, "charles@engine.example", False)
    await contacts.sync(ctx)
    assert not contacts.explain(ctx, "charles@engine.example").person.invitable
    with ctx.store.session() as s:
        from zoomcal.store.models import AuditEntry

        actions = [a for (a,) in s.execute(select(AuditEntry.action))]
    assert {"contacts.merge", "contacts.split", "contacts.invitable"} <= set(actions)
    assert audit.verify(ctx).ok


async def test_a_member_cannot_see_or_change_the_directory(setup, world, tmp_path):
    ctx, *_ = setup
    await contacts.sync(ctx)
    member = ctx.services.context("default", Actor("ada@example.com", "member", "ada@example.com"))
    for call in (lambda: contacts.explain(member, "alan@example.com"),
                 lambda: contacts.merge(member, "alan@example.com", "charles@engine.example"),
                 lambda: contacts.sources(member)):
        with pytest.raises(ForbiddenError):
            call()
    assert contacts.search(member, "ala")[0].email == "alan@example.com"      # what scheduling needs


async def test_presence_follows_the_webhook_at_once(setup):
    """A Zoom user who is no zoomcal user sets a status in the Zoom client: Zoom's signed webhook reaches zoomcal's
    web app, and the directory shows the new status at once."""
    from zoomcal.web.app import make_app

    ctx, world, _book, _ada = setup
    await contacts.sync(ctx)
    alan = contacts.search(ctx, "alan@example.com")[0]
    assert alan.status == "Available" and alan.status_from == "zoom" and alan.user is None
    ctx.services.settings.zoom_webhook_secret = world.zoom.webhook_secret
    receiver = httpx.AsyncClient(transport=httpx.ASGITransport(make_app(ctx.services)), base_url="https://zoomcal")

    async def deliver(url, headers, body):
        return await receiver.post(url, headers=headers, content=body)

    world.zoom.webhook_url, world.zoom.outbox.deliver = "https://zoomcal/webhooks/zoom", deliver
    async with httpx.AsyncClient(transport=world.transport(), base_url="http://sandbox") as person:
        answer = await person.post(f"/zoom/sandbox/users/{alan.zoom_user_id}/presence", json={"status": "Away"})
        assert answer.status_code == 204
    assert world.zoom.outbox.sent[-1].status == 200
    assert contacts.search(ctx, "alan@example.com")[0].status == "Away"
    await receiver.aclose()


async def test_scopes_granted_against_needed(setup):
    ctx, world, _book, _ada = setup
    world.zoom.app_scopes = [s for s in world.zoom.app_scopes if s != "contact_group:read:admin"]
    rows = {r.provider: r for r in await contacts.scopes(ctx)}
    zoom = rows["zoom"]
    assert zoom.needed["groups"] == ["contact_group:read:admin"] and zoom.missing == ["contact_group:read:admin"]
    assert "user:read:list_users:admin" in zoom.granted
    assert rows["carddav"].granted is None and rows["carddav"].missing == []


async def test_a_source_that_fails_is_reported_and_others_go_on(setup):
    ctx, world, book, _ada = setup
    world.zoom_faults.add("500", "GET", r"/v2/users$", times=10)
    report = await contacts.sync(ctx)
    assert len(report.failed) == 1 and "zoom" in report.failed[0]
    assert {p.email for p in contacts.list_people(ctx)} >= {"charles@engine.example", "alan@example.com"}
    assert {s.provider: s.status for s in contacts.sources(ctx)}["zoom"] in ("error", "new")


@pytest.mark.parametrize("db", ["postgresql"])
async def test_on_postgresql(world, tmp_path, request, db, radicale):
    url = _fresh_pg(request.getfixturevalue("pg_schema_url")).url
    ctx = make_context(world, tmp_path, url)
    link_sandbox_user(ctx, world, "ada@example.com", "Ada Lovelace", "Europe/London")
    world.zoom.add_user("alan@example.com", "Alan", "Turing")
    report = await contacts.sync(ctx)
    assert report.failed == [] and report.people == 2
    with ctx.store.session() as s:
        assert len(s.scalars(select(ContactRecordRow)).all()) == 2
    assert [p.email for p in contacts.search(ctx, "alan")] == ["alan@example.com"]
    ctx.store.dispose()


async def test_four_sources_one_directory(setup):
    """Google People and Microsoft Graph beside Zoom and CardDAV, linked as an admin would (each checked with its
    provider first): the seeded contacts land in the one directory, each address once."""
    from conftest import SANDBOX

    ctx, world, _book, ada = setup
    for request in world.contact_link_requests(ada, SANDBOX):
        linked = await accounts.link(ctx, "ada@example.com", request["provider"], request["options"],
                                     request["secrets"])
        assert linked.calendar_id is None
    report = await contacts.sync(ctx)
    assert report.failed == [] and report.sources == 4
    people = contacts.list_people(ctx)
    listed = [a for p in people for a in p.emails]
    assert len(listed) == len(set(listed))                       # nobody twice
    sources = {s for p in people for s in p.sources}
    assert sources == {"zoom", "carddav", "google-contacts", "graph-contacts"}
    grace = next(p for p in people if p.user == "grace@example.com")
    assert {"zoom", "graph-contacts"} <= set(grace.sources)          # the directory entry is the user
    again = await contacts.sync(ctx)
    assert (again.written, again.changed_people, again.new_problems) == (0, 0, 0)
    scopes = {r.provider: r for r in await contacts.scopes(ctx)}
    assert scopes["google-contacts"].missing == [] and scopes["graph-contacts"].missing == []
    assert "https://www.googleapis.com/auth/contacts.readonly" in scopes["google-contacts"].granted
    after = await contacts.sync(ctx)             # asking for the scopes refreshed the grants: they still work
    assert after.failed == []


async def test_unlinking_a_source_revokes_its_grant_and_its_people_go(setup):
    from conftest import SANDBOX

    ctx, world, _book, ada = setup
    google = next(r for r in world.contact_link_requests(ada, SANDBOX) if r["provider"] == "google-contacts")
    linked = await accounts.link(ctx, "ada@example.com", google["provider"], google["options"], google["secrets"])
    await contacts.sync(ctx)
    before = {p.email for p in contacts.list_people(ctx)}
    gone = await accounts.unlink(ctx, linked.id)
    assert "revoked" in gone.revoked.lower() or "revoke" in gone.revoked.lower()
    await contacts.sync(ctx)
    after = contacts.list_people(ctx)
    assert all("google-contacts" not in p.sources for p in after) and {p.email for p in after} < before
    with ctx.store.session() as s:
        assert all(not r.record_id.startswith(("contacts:", "other:")) for r in s.scalars(select(ContactRecordRow)))


async def test_another_tenants_directory_is_out_of_sight(setup, world, tmp_path):
    ctx, *_ = setup
    await contacts.sync(ctx)
    assert contacts.search(ctx, "alan")
    other = make_context(world, tmp_path, ctx.settings.resolved_database_url(), tenant="other")
    assert contacts.search(other, "alan") == [] and contacts.list_people(other) == []
    assert (await contacts.sync(other)).people == 0
    with pytest.raises(Exception) as caught:
        contacts.explain(other, "alan@example.com")
    assert type(caught.value).__name__ == "NotFoundError"
    other.store.dispose()


async def test_people_linked_to_one_zoom_account_share_one_listing_and_presence_is_swept_now_and_then(world, tmp_path):
    """Each person authorized zoomcal themselves (user OAuth): their Zoom account is learnt once (`/users/me`) and
    its users are listed once a sync, not once per person. Everyone's presence is read on the first listing and
    then only every six hours (the webhook keeps it live between); a listing that did not read it keeps it."""
    from datetime import timedelta

    from zoomcal.connectors.zoom.directory import PRESENCE_EVERY

    ctx = make_context(world, tmp_path)
    people = [f"p{n}@example.com" for n in range(3)]
    for email in people:
        link_sandbox_user(ctx, world, email, email.split("@")[0].title(), zoom_mode="user")

    class Clock:
        at = ctx.now()

        def now(self):
            return self.at

    ctx.clock = clock = Clock()
    first = await contacts.sync(ctx)
    assert first.failed == [] and first.sources == 1
    shown = contacts.sources(ctx)
    reader = next(s.account_id for s in shown if s.status == "ok")
    assert sorted((s.status, s.shared_with) for s in shown) == [("ok", None), ("shared", reader), ("shared", reader)]
    assert {p.email: p.status for p in contacts.list_people(ctx)} == dict.fromkeys(people, "Available")

    zoom_user = next(u for u in world.zoom.users.values() if u["email"] == people[1])
    zoom_user["_presence"] = "Busy"            # changed in Zoom, its webhook lost
    calls = world.zoom_calls.get("total", 0)
    again = await contacts.sync(ctx)
    # one listing of the users (and their groups), nobody's presence, nobody's /users/me again
    assert again.sources == 1 and again.api_calls == world.zoom_calls.get("total", 0) - calls <= 2
    assert contacts.list_people(ctx)[1].status == "Available"

    clock.at += PRESENCE_EVERY + timedelta(minutes=1)
    later = await contacts.sync(ctx)
    assert later.api_calls >= 1 + len(people)
    assert {p.email: p.status for p in contacts.list_people(ctx)}[people[1]] == "Busy"
    ctx.store.dispose()


async def test_an_admin_explains_merges_splits_and_stops_invitations_in_the_portal(setup):
    import re

    from fastapi.testclient import TestClient

    from zoomcal.app import signin
    from zoomcal.web.app import make_app

    ctx, _world, _book, _ada = setup
    await contacts.sync(ctx)
    signin.set_password(ctx, "ada@example.com", "correct horse battery")
    signin.set_role(ctx, "ada@example.com", "admin")
    client = TestClient(make_app(ctx.services), base_url="https://127.0.0.1")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"csrf": token, "email": "ada@example.com", "password": "correct horse battery"})
    listing = client.get("/contacts").text
    assert 'id="sources"' in listing and "carddav" in listing
    page = client.get("/contacts/person?email=ALAN@example.com").text
    assert "both have alan@example.com" in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    card = next(r["key"] for r in contacts.explain(ctx, "alan@example.com").records if r["source"] == "carddav")
    assert client.post("/contacts/split", data={"csrf": "forged", "record": card}).status_code == 403
    done = client.post("/contacts/split", data={"csrf": csrf, "record": card})
    assert "the record stands alone" in done.text and 'name="record"' not in done.text    # its page: alone
    card_person = contacts.explain(ctx, "alan@bletchley.example").person
    assert card_person.sources == ["carddav"]
    zoom_alan = next(p for p in contacts.list_people(ctx) if p.sources == ["zoom"] and p.name == "Alan Turing")
    assert f"/contacts/person?id={zoom_alan.id}" in client.get("/contacts?q=alan").text
    done = client.post("/contacts/merge", data={"csrf": csrf, "person": card_person.id, "other": zoom_alan.id})
    assert done.status_code == 200, re.search(r'role="alert">([^<]*)', done.text).group(1)
    assert "merged" in done.text
    assert contacts.explain(ctx, "alan@bletchley.example").person.sources == ["carddav", "zoom"]
    done = client.post("/contacts/invite", data={"csrf": csrf, "email": "charles@engine.example", "invite": "no"})
    assert "will not invite" in done.text and not contacts.explain(ctx, "charles@engine.example").person.invitable
    assert client.post("/contacts/delete", data={"csrf": csrf}).status_code == 404
    missing = client.get("/contacts/person?email=nobody@example.com")
    assert missing.status_code == 404 and "nobody in the directory" in missing.text
    # a member sees the directory but no person page and no decision
    signin.set_password(ctx, "grace@example.com", "another long password")
    member = TestClient(make_app(ctx.services), base_url="https://127.0.0.1")
    token = re.search(r'name="csrf" value="([^"]+)"', member.get("/login").text).group(1)
    member.post("/login", data={"csrf": token, "email": "grace@example.com", "password": "another long password"})
    listing = member.get("/contacts").text
    assert "Charles Babbage" in listing and "/contacts/person" not in listing and 'id="sources"' not in listing
    assert member.get("/contacts/person?email=alan@example.com").status_code == 403
    member_csrf = re.search(r'name="csrf" value="([^"]+)"', listing).group(1)
    assert member.post("/contacts/invite", data={"csrf": member_csrf, "email": "charles@engine.example",
                                                 "invite": "yes"}).status_code == 403
