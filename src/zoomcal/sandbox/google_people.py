"""Offline emulator of the Google People API v1: a user's contacts, their "other contacts" and their Google
Workspace domain's directory. Served on the Google sandbox app under `/google/people` (the API's own root is
`https://people.googleapis.com`; paths are `v1/...` below it).

Shapes follow ../shared/specs/google/people.v1.json; behaviour follows its descriptions:

- `people/me/connections` (`personFields` required, or the older `requestMask.includeField`; listed in the order
  people last changed, whatever `sortOrder` asks), `otherContacts`
  (`readMask` required: names, emailAddresses, phoneNumbers, photos, metadata) and `people:listDirectoryPeople`
  (`readMask` and `sources` required; domain profiles and domain shared contacts of the caller's domain). Pages of
  `pageSize` (1..1000, default 100) with `nextPageToken`; the last page of a listing asked with `requestSyncToken`
  carries `nextSyncToken`. A `syncToken` lists what changed since, deleted people as `{resourceName, etag,
  metadata: {deleted: true}}`. A page or sync token is refused (400 INVALID_ARGUMENT) beside parameters other than
  the ones its first call had.
- Sync tokens expire 7 days after the full sync they descend from (`SYNC_TOKEN_DAYS`, judged by `clock`), or when
  `expire_sync_tokens` is called; an expired or unreadable one is answered 400 FAILED_PRECONDITION with an ErrorInfo
  of reason `EXPIRED_SYNC_TOKEN` ("Sync token is expired. Clear local cache and retry call without the sync
  token."), as Google answers it.
- `people:createContact`, `people/{id}:updateContact` (`updatePersonFields` required; the person's
  `metadata.sources` must carry the contact's current etag, else 400 FAILED_PRECONDITION), `people/{id}:
  deleteContact` and `people/{id}` (get) for contacts, directory profiles and `people/me`.
- Scopes, from the discovery document: each method needs one of the scopes it lists; a token whose grant named
  scopes and none of those is answered 403 PERMISSION_DENIED (`ACCESS_TOKEN_SCOPE_INSUFFICIENT`).

Resource names are formed as Google forms them: `people/c{decimal}` for a contact whose source id is the same
number in hex, `otherContacts/c{decimal}`, and `people/{21 digits}` for a domain profile. Not emulated: contact
groups, photos, batch mutations, searches, merging of profile data into contacts, propagation delays (a write is
in the next sync at once), the People API's own quotas.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from zoomcal.sandbox.common import ApiError, TokenBook

AUTH = "https://www.googleapis.com/auth/"
CONTACTS = AUTH + "contacts"
CONTACTS_READONLY = AUTH + "contacts.readonly"
OTHER_READONLY = AUTH + "contacts.other.readonly"
DIRECTORY_READONLY = AUTH + "directory.readonly"
PEOPLE_SCOPES = (CONTACTS, CONTACTS_READONLY, OTHER_READONLY, DIRECTORY_READONLY)
SYNC_TOKEN_DAYS = 7
PERSON_FIELDS = ("addresses", "ageRanges", "biographies", "birthdays", "calendarUrls", "clientData", "coverPhotos",
                 "emailAddresses", "events", "externalIds", "genders", "imClients", "interests", "locales",
                 "locations", "memberships", "metadata", "miscKeywords", "names", "nicknames", "occupations",
                 "organizations", "phoneNumbers", "photos", "relations", "sipAddresses", "skills", "urls",
                 "userDefined")
OTHER_FIELDS = ("emailAddresses", "metadata", "names", "phoneNumbers", "photos")
UPDATABLE = tuple(f for f in PERSON_FIELDS if f not in ("ageRanges", "coverPhotos", "metadata", "photos"))
SINGLETONS = ("biographies", "birthdays", "genders", "names")
DIRECTORY_SOURCES = ("DIRECTORY_SOURCE_TYPE_DOMAIN_CONTACT", "DIRECTORY_SOURCE_TYPE_DOMAIN_PROFILE")
EXPIRED = "Sync token is expired. Clear local cache and retry call without the sync token."


def _error(status: int, code: str, message: str, reason: str | None = None, method: str = "") -> ApiError:
    body: dict[str, Any] = {"code": status, "message": message, "status": code}
    if reason:
        body["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                            "domain": "googleapis.com" if reason.startswith("ACCESS") else "people.googleapis.com",
                            "metadata": {"service": "people.googleapis.com",
                                         "method": f"google.people.v1.PeopleService.{method}"}}]
    return ApiError(status, {"error": body})


def _invalid(message: str) -> ApiError:
    return _error(400, "INVALID_ARGUMENT", message)


def _encode(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str) -> dict | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _stamp(seconds: float) -> str:
    when = datetime.fromtimestamp(seconds, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass
class Book:
    """One collection the API lists: a user's contacts or other contacts, or a domain's directory. Deleted people
    stay as tombstones, for the sync listings after their deletion."""

    key: str
    people: dict[str, dict[str, Any]] = field(default_factory=dict)     # resource name -> stored person
    epoch: int = 0                                                    # bumped to expire its sync tokens


@dataclass
class PeopleState:
    contacts: dict[str, Book] = field(default_factory=dict)      # owner (lower-case e-mail) -> their contacts
    other: dict[str, Book] = field(default_factory=dict)         # owner -> their other contacts
    directory: dict[str, Book] = field(default_factory=dict)     # domain -> its profiles and shared contacts
    seq: int = 0
    clock: Callable[[], float] = time.time      # wall-clock seconds: sync tokens expire SYNC_TOKEN_DAYS after

    # --- the books --------------------------------------------------------------------------------------
    def book(self, kind: str, key: str) -> Book:
        books = {"contacts": self.contacts, "other": self.other, "directory": self.directory}[kind]
        key = key.lower()
        if key not in books:
            books[key] = Book(f"{kind}:{key}")
        return books[key]

    def _touch(self, person: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        person["_seq"] = self.seq
        tag = base64.b64encode(self.seq.to_bytes(6, "big") + secrets.token_bytes(6)).decode()
        person["etag"] = "%" + tag
        for source in person["metadata"]["sources"]:
            source["etag"] = "#" + base64.b64encode(secrets.token_bytes(9)).decode()
            source["updateTime"] = _stamp(self.clock())
        return person

    def _new(self, book: Book, resource: str, source: dict[str, Any], given: str, family: str,
             emails: list[Any], phones: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        person: dict[str, Any] = {"resourceName": resource, "metadata": {"sources": [source]}}
        if extra:
            person.update(extra)
        _set_fields(person, source, given, family, emails, phones)
        book.people[resource] = self._touch(person)
        return person

    def add_contact(self, owner: str, given: str = "", family: str = "", emails: list[Any] | None = None,
                    phones: list[str] | None = None) -> dict[str, Any]:
        """A contact the owner saved. `emails`: addresses, or (address, type) pairs; the first is primary."""
        number = secrets.randbits(63)
        return self._new(self.book("contacts", owner), f"people/c{number}", {"type": "CONTACT", "id": f"{number:x}"},
                         given, family, emails or [], phones or [])

    def add_other(self, owner: str, name: str = "", email: str = "", phones: list[str] | None = None
                  ) -> dict[str, Any]:
        """Someone the owner wrote to, kept by Google among their other contacts."""
        number = secrets.randbits(63)
        given, _, family = name.partition(" ")
        return self._new(self.book("other", owner), f"otherContacts/c{number}",
                         {"type": "OTHER_CONTACT", "id": f"{number:x}"}, given, family, [email] if email else [],
                         phones or [])

    def add_profile(self, email: str, name: str = "", aliases: tuple[str, ...] = ()) -> dict[str, Any]:
        """A member of the Workspace domain of `email`: a domain profile in its directory."""
        number = str(100000000000000000000 + secrets.randbelow(10 ** 20))
        given, _, family = name.partition(" ")
        return self._new(self.book("directory", _domain(email)), f"people/{number}",
                         {"type": "DOMAIN_PROFILE", "id": number,
                          "profileMetadata": {"objectType": "PERSON", "userTypes": ["GOOGLE_USER"]}},
                         given, family, [(email, "work"), *((a, "work") for a in aliases)], [])

    def add_domain_contact(self, domain: str, name: str, email: str) -> dict[str, Any]:
        """A contact an administrator shares with the whole domain."""
        number = secrets.randbits(63)
        given, _, family = name.partition(" ")
        return self._new(self.book("directory", domain), f"people/c{number}",
                         {"type": "DOMAIN_CONTACT", "id": f"{number:x}"}, given, family, [email], [])

    def find(self, kind: str, key: str, email: str) -> dict[str, Any]:
        """The live person of a book holding `email` (any case)."""
        for person in self.book(kind, key).people.values():
            if not person.get("_deleted") and any(str(e.get("value", "")).lower() == email.lower()
                                                  for e in person.get("emailAddresses") or []):
                return person
        raise KeyError(email)

    def change(self, kind: str, key: str, resource: str, given: str | None = None, family: str | None = None,
               emails: list[Any] | None = None, phones: list[str] | None = None) -> dict[str, Any]:
        """Change a person as the owner (or, for the directory, an administrator) would."""
        person = self.book(kind, key).people[resource]
        name = (person.get("names") or [{}])[0]
        source = person["metadata"]["sources"][0]
        _set_fields(person, source, name.get("givenName", "") if given is None else given,
                    name.get("familyName", "") if family is None else family,
                    [(e["value"], e.get("type")) for e in person.get("emailAddresses") or []] if emails is None
                    else emails,
                    [p["value"] for p in person.get("phoneNumbers") or []] if phones is None else phones)
        return self._touch(person)

    def delete(self, kind: str, key: str, resource: str) -> None:
        person = self.book(kind, key).people[resource]
        person["_deleted"] = True
        self._touch(person)

    def expire_sync_tokens(self, key: str | None = None) -> None:
        """Invalidate the sync tokens of every book (or of the books of one owner or domain)."""
        for books in (self.contacts, self.other, self.directory):
            for name, book in books.items():
                if key is None or name == key.lower():
                    book.epoch += 1

    def seed(self, email: str, name: str = "") -> None:
        """What a new sandbox user starts with: a profile in their domain's directory (with an alias), and contacts
        meant to exercise whoever reads them: one with two addresses, one with no address at all, one whose address
        is written in capitals with an internationalised domain, and other contacts, one of which repeats a
        contact's address in another case."""
        local = email.split("@")[0]
        first, _, last = (name or local).partition(" ")
        aliases = (f"{first}.{last}@{_domain(email)}".lower(),) if last else ()
        self.add_profile(email, name or local, aliases)
        self.add_contact(email, "Margaret", "Hamilton", [("margaret@apollo.example", "work"),
                                                        ("maggie.h@home.example", "home")], ["+1 617 555 0101"])
        self.add_contact(email, "Charles", "Babbage", [], ["+44 20 7946 0018"])
        self.add_contact(email, "Émilie", "du Châtelet", [("Emilie.DuChatelet@BÜCHER.example", "work")])
        self.add_other(email, "Otto Neurath", "otto@isotype.example")
        self.add_other(email, "", "MARGARET@Apollo.example")


def _domain(email: str) -> str:
    return email.rpartition("@")[2].lower()


def _set_fields(person: dict[str, Any], source: dict[str, Any], given: str, family: str, emails: list[Any],
                phones: list[str]) -> None:
    """Names, addresses and phone numbers as Google serves them: each field's metadata names its source, the first
    address is the primary one."""
    ref = {"type": source["type"], "id": source["id"]}
    display = " ".join(p for p in (given, family) if p)
    if display:
        name = {"metadata": {"primary": True, "sourcePrimary": True, "source": ref}, "displayName": display,
                "familyName": family, "givenName": given,
                "displayNameLastFirst": ", ".join(p for p in (family, given) if p), "unstructuredName": display}
        person["names"] = [{k: v for k, v in name.items() if v}]      # empty fields are left out of Google's JSON
    else:
        person.pop("names", None)
    out = []
    for i, entry in enumerate(emails):
        value, kind = (entry, None) if isinstance(entry, str) else (entry[0], entry[1])
        item: dict[str, Any] = {"metadata": {"source": ref}, "value": value}
        if i == 0:
            item["metadata"] = {"primary": True, "sourcePrimary": True, "source": ref}
        if kind:
            item.update(type=kind, formattedType=kind.capitalize())
        out.append(item)
    if out:
        person["emailAddresses"] = out
    else:
        person.pop("emailAddresses", None)
    if phones:
        person["phoneNumbers"] = [{"metadata": {"primary": i == 0, "source": ref}, "value": p}
                                  for i, p in enumerate(phones)]
    else:
        person.pop("phoneNumbers", None)


def _served(person: dict[str, Any], mask: tuple[str, ...]) -> dict[str, Any]:
    """A person as a listing with this field mask serves it; a deleted one as its tombstone."""
    if person.get("_deleted"):
        return {"resourceName": person["resourceName"], "etag": person["etag"],
                "metadata": {"sources": [{k: v for k, v in s.items() if k in ("type", "id")}
                                         for s in person["metadata"]["sources"]], "deleted": True}}
    out = {"resourceName": person["resourceName"], "etag": person["etag"]}
    out.update({k: json.loads(json.dumps(person[k])) for k in mask if k in person})
    return out


class GoogleLike(Protocol):
    """What the People routes use of the Google sandbox's state."""

    tokens: TokenBook
    lock: Any
    people: PeopleState


def _mask(value: str | None, valid: tuple[str, ...], name: str, method: str) -> tuple[str, ...]:
    if not value:
        raise _invalid(f"{name} mask is required. Please specify one or more valid paths. Valid paths are "
                       f"documented at https://developers.google.com/people/api/rest/v1/{method}.")
    paths = tuple(sorted({p.strip().removeprefix("person.") for p in value.split(",") if p.strip()}))
    for path in paths:
        if path not in valid:
            raise _invalid(f'Invalid {name} mask path: "{path}". Valid paths are documented at '
                           f"https://developers.google.com/people/api/rest/v1/{method}.")
    return paths


def _page_size(request: Request) -> int:
    value = request.query_params.get("pageSize") or "0"
    try:
        size = int(value)
    except ValueError as exc:
        raise _invalid(f'Invalid value at \'page_size\' (TYPE_INT32), "{value}"') from exc
    if size < 0 or size > 1000:
        raise _invalid("page_size must be between 1 and 1000, inclusive.")
    return size or 100


def _flag(request: Request, name: str) -> bool:
    value = (request.query_params.get(name) or "false").lower()
    if value not in ("true", "false"):
        raise _invalid(f'Invalid value at \'{name}\' (TYPE_BOOL), "{value}"')
    return value == "true"


def build_people_router(state: GoogleLike) -> APIRouter:
    router = APIRouter()
    people = state.people

    def caller(request: Request, scopes: tuple[str, ...], method: str) -> str:
        subject = state.tokens.subject(request)
        if subject is None:
            raise ApiError(401, {"error": {"code": 401, "message": "Request had invalid authentication "
                                           "credentials. Expected OAuth 2 access token, login cookie or other "
                                           "valid authentication credential.", "status": "UNAUTHENTICATED"}})
        granted = state.tokens.granted(request)
        if granted is not None and not granted & set(scopes):
            raise _error(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.",
                         "ACCESS_TOKEN_SCOPE_INSUFFICIENT", method)
        return subject

    def listing(request: Request, book: Book, mask: tuple[str, ...], sources: tuple[str, ...], items_key: str,
                total_key: str | None, method: str) -> JSONResponse:
        """One page of a listing of a book: everything (a full listing), or what changed since a sync token."""
        query = request.query_params
        size = _page_size(request)
        want_sync = _flag(request, "requestSyncToken")
        sync_token, page_token = query.get("syncToken") or "", query.get("pageToken") or ""
        now = people.clock()
        if page_token:
            page = _decode(page_token)
            if page is None or page.get("b") != book.key:
                raise _invalid("Request contains an invalid argument.")
            if page.get("m") != list(mask) or page.get("src") != list(sources) or \
                    (sync_token and page.get("t") != sync_token) or page.get("r") != want_sync:
                raise _invalid("Parameters provided with a page token must match the call that provided the "
                               "page token.")
            since, upto, full_at, after, total = page["s"], page["u"], page["f"], page["a"], page["n"]
        else:
            since, full_at, after = 0, now, 0
            if sync_token:
                token = _decode(sync_token)
                if token is None or token.get("b") != book.key or token.get("e") != book.epoch or \
                        now - float(token.get("f", 0)) > SYNC_TOKEN_DAYS * 86400:
                    raise _error(400, "FAILED_PRECONDITION", EXPIRED, "EXPIRED_SYNC_TOKEN", method)
                if token.get("m") != list(mask) or token.get("src") != list(sources):
                    raise _invalid("Parameters provided with a sync token must match the call that provided the "
                                   "sync token.")
                since, full_at = token["s"], token["f"]
            upto = people.seq
            total = None
        # in the order people last changed; a person changed while the pages are read moves to the end and is
        # listed (again) there, so a listing never misses one; the next sync token starts where the first page did
        rest = sorted((p for p in book.people.values()
                       if p["_seq"] > max(since, after) and (since or not p.get("_deleted"))),
                      key=lambda p: p["_seq"])
        if total is None:
            total = len(rest)
        chunk = rest[:size]
        body: dict[str, Any] = {items_key: [_served(p, mask) for p in chunk]}
        if total_key:
            body[total_key] = total
            if total_key == "totalItems":
                body["totalPeople"] = total
        if len(rest) > size:
            body["nextPageToken"] = _encode({"b": book.key, "s": since, "u": upto, "f": full_at,
                                             "a": chunk[-1]["_seq"], "n": total, "m": list(mask),
                                             "src": list(sources), "t": sync_token, "r": want_sync})
        elif want_sync:
            body["nextSyncToken"] = _encode({"b": book.key, "e": book.epoch, "s": upto, "f": full_at,
                                             "m": list(mask), "src": list(sources)})
        if not body[items_key]:
            del body[items_key]      # an empty list is left out of Google's JSON
        return JSONResponse(body)

    @router.get("/v1/people/{who}/connections")
    def connections(who: str, request: Request):
        subject = caller(request, (CONTACTS, CONTACTS_READONLY), "ListConnections")
        if who != "me":
            raise _invalid("resource_name must be people/me.")
        query = request.query_params
        mask = _mask(query.get("personFields") or query.get("requestMask.includeField"), PERSON_FIELDS,
                     "personFields", "people.connections/list")
        order = query.get("sortOrder") or "LAST_MODIFIED_ASCENDING"
        if order not in ("LAST_MODIFIED_ASCENDING", "LAST_MODIFIED_DESCENDING", "FIRST_NAME_ASCENDING",
                         "LAST_NAME_ASCENDING"):
            raise _invalid(f'Invalid value at \'sort_order\', "{order}"')
        sources = tuple(sorted(query.getlist("sources")))
        with state.lock:
            return listing(request, people.book("contacts", subject), mask, sources, "connections", "totalItems",
                           "ListConnections")

    @router.get("/v1/otherContacts")
    def other_contacts(request: Request):
        subject = caller(request, (OTHER_READONLY,), "ListOtherContacts")
        query = request.query_params
        sources = tuple(sorted(query.getlist("sources"))) or ("READ_SOURCE_TYPE_CONTACT",)
        if "READ_SOURCE_TYPE_CONTACT" not in sources:
            raise _invalid("READ_SOURCE_TYPE_PROFILE cannot be specified without READ_SOURCE_TYPE_CONTACT.")
        valid = OTHER_FIELDS if sources == ("READ_SOURCE_TYPE_CONTACT",) else PERSON_FIELDS
        mask = _mask(query.get("readMask"), valid, "readMask", "otherContacts/list")
        with state.lock:
            return listing(request, people.book("other", subject), mask, sources, "otherContacts", "totalSize",
                           "ListOtherContacts")

    @router.get("/v1/people:listDirectoryPeople")
    def directory(request: Request):
        subject = caller(request, (DIRECTORY_READONLY,), "ListDirectoryPeople")
        query = request.query_params
        mask = _mask(query.get("readMask"), PERSON_FIELDS, "readMask", "people/listDirectoryPeople")
        sources = tuple(sorted(query.getlist("sources")))
        if not sources or any(s not in DIRECTORY_SOURCES for s in sources):
            raise _invalid("Must specify at least one valid directory source: DIRECTORY_SOURCE_TYPE_DOMAIN_PROFILE "
                           "or DIRECTORY_SOURCE_TYPE_DOMAIN_CONTACT.")
        with state.lock:
            if _domain(subject) not in people.directory:
                raise _error(400, "FAILED_PRECONDITION", "Must be a G Suite user.")
            book = people.book("directory", _domain(subject))
            wanted = {"DIRECTORY_SOURCE_TYPE_DOMAIN_PROFILE": "DOMAIN_PROFILE",
                      "DIRECTORY_SOURCE_TYPE_DOMAIN_CONTACT": "DOMAIN_CONTACT"}
            kinds = {wanted[s] for s in sources}
            view = Book(book.key + ":" + ",".join(sorted(kinds)), {
                k: p for k, p in book.people.items() if p["metadata"]["sources"][0]["type"] in kinds}, book.epoch)
            return listing(request, view, mask, sources, "people", None, "ListDirectoryPeople")

    def person_body(body: Any, kind: str) -> tuple[str, str, list[Any], list[str]]:
        """(given, family, emails, phones) of a Person written to the API."""
        if not isinstance(body, dict):
            raise _invalid("Invalid JSON payload received.")
        for name in SINGLETONS:
            if isinstance(body.get(name), list) and len(body[name]) > 1:
                raise _invalid(f"Only one {name[:-1]} field is allowed for {kind} sources.")
        name = (body.get("names") or [{}])[0]
        if not isinstance(name, dict):
            raise _invalid("Invalid value at 'person.names[0]'.")
        emails = [(str(e.get("value") or ""), e.get("type")) for e in body.get("emailAddresses") or []
                  if isinstance(e, dict) and e.get("value")]
        phones = [str(p.get("value")) for p in body.get("phoneNumbers") or [] if isinstance(p, dict) and p.get("value")]
        given = str(name.get("givenName") or "")
        family = str(name.get("familyName") or "")
        if not given and not family and name.get("unstructuredName"):
            given, _, family = str(name["unstructuredName"]).partition(" ")
        return given, family, emails, phones

    def response_mask(request: Request) -> tuple[str, ...]:
        value = request.query_params.get("personFields")
        return _mask(value, PERSON_FIELDS, "personFields", "people/get") if value else PERSON_FIELDS

    async def read_json(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError as exc:
            raise _invalid("Invalid JSON payload received.") from exc

    @router.post("/v1/people:createContact")
    async def create_contact(request: Request):
        subject = caller(request, (CONTACTS,), "CreateContact")
        given, family, emails, phones = person_body(await read_json(request), "contact")
        mask = response_mask(request)
        with state.lock:
            return _served(people.add_contact(subject, given, family, emails, phones), mask)

    def own_contact(subject: str, pid: str) -> dict[str, Any]:
        person = people.book("contacts", subject).people.get(f"people/{pid}")
        if person is None or person.get("_deleted"):
            raise _error(404, "NOT_FOUND", "Requested entity was not found.")
        return person

    @router.patch("/v1/people/{pid}:updateContact")
    async def update_contact(pid: str, request: Request):
        subject = caller(request, (CONTACTS,), "UpdateContact")
        body = await read_json(request)
        fields = _mask(request.query_params.get("updatePersonFields"), UPDATABLE, "updatePersonFields",
                       "people/updateContact")
        mask = response_mask(request)
        given, family, emails, phones = person_body(body, "contact")
        with state.lock:
            person = own_contact(subject, pid)
            sent = [s for s in (body.get("metadata") or {}).get("sources") or [] if isinstance(s, dict)]
            if not sent:
                raise _invalid("Request person.metadata.sources must be specified.")
            held = person["metadata"]["sources"][0]
            if not any(s.get("type") == "CONTACT" and s.get("etag") == held["etag"] for s in sent) and \
                    body.get("etag") != person["etag"]:
                raise _error(400, "FAILED_PRECONDITION", "person.metadata.sources.etag is different than the "
                             "contact's etag, which indicates the contact has changed since its data was read.",
                             "failedPrecondition", "UpdateContact")
            people.change("contacts", subject, person["resourceName"],
                          given=given if "names" in fields else None, family=family if "names" in fields else None,
                          emails=emails if "emailAddresses" in fields else None,
                          phones=phones if "phoneNumbers" in fields else None)
            return _served(person, mask)

    @router.delete("/v1/people/{pid}:deleteContact")
    def delete_contact(pid: str, request: Request):
        subject = caller(request, (CONTACTS,), "DeleteContact")
        with state.lock:
            person = own_contact(subject, pid)
            people.delete("contacts", subject, person["resourceName"])
            return JSONResponse({})

    @router.get("/v1/people/{pid}")
    def get_person(pid: str, request: Request):
        subject = caller(request, PEOPLE_SCOPES, "GetPerson")
        query = request.query_params
        mask = _mask(query.get("personFields") or query.get("requestMask.includeField"), PERSON_FIELDS,
                     "personFields", "people/get")
        with state.lock:
            if pid == "me":
                try:
                    return _served(people.find("directory", _domain(subject), subject), mask)
                except KeyError:
                    raise _error(404, "NOT_FOUND", "Requested entity was not found.") from None
            for book in (people.book("contacts", subject), people.directory.get(_domain(subject))):
                person = book.people.get(f"people/{pid}") if book else None
                if person is not None and not person.get("_deleted"):
                    return _served(person, mask)
            raise _error(404, "NOT_FOUND", "Requested entity was not found.")

    return router
