"""Offline emulator of Microsoft Graph's directory and people APIs (v1.0 slice): the organisation's users and their
delta, a user's Outlook contacts and their delta, and the people relevant to a user. Served on the Graph sandbox
app (`/graph/v1.0`), beside the calendar.

Shapes follow ../shared/specs/microsoft/graph-v1.0-users.yml, -personalcontacts.yml, -people.yml and
-contacts-functions.yml; behaviour follows Graph's documented one:

- `GET /users` (`$select`, else the default property set; `$top` up to 999, default 100; `$filter` with `eq`, `in`
  and `startswith` joined by `and`, case-insensitive as the directory compares; `@odata.nextLink` with a
  `$skiptoken`), `GET /users/{id or userPrincipalName}`, `/me`. A user has `mail`, `userPrincipalName`,
  `proxyAddresses` (`SMTP:` the primary address, `smtp:` the others) and `otherMails`; the last two only when
  selected.
- `GET /users/delta` (`delta()` and `microsoft.graph.delta()` too): the first round lists every user with the
  selected properties, in pages of `odata.maxpagesize` (default 100) joined by `@odata.nextLink`, the last one with
  `@odata.deltaLink`. Later rounds list a changed user by its id and the selected properties that changed (only
  changes to selected properties are tracked), a new one in full, a deleted one as `{"id", "@removed": {"reason":
  "changed"}}` (soft-deleted, restorable) or `"deleted"` (gone for good). A delta link is good for 7 days
  (`DELTA_DAYS`, by `clock`): after that 400 `syncStateNotFound`; `expire_delta_tokens` stands for Graph dropping
  sync state: 410 `resyncRequired`.
- `GET/POST /users/{id}/contacts`, `GET/PATCH/DELETE /users/{id}/contacts/{contact}` and `GET
  /users/{id}/contacts/delta`: contacts with `emailAddresses` [{name, address}], pages of 10 (`$top`, `$skip`);
  the delta reports changed contacts whole and deleted ones as `@removed` {"reason": "deleted"}; an expired or
  unreadable delta token is 410 `SyncStateNotFound` (Outlook's answer). Only the mailbox's owner reads them.
- `GET /users/{id}/people`: people relevant to the user, most relevant first: colleagues from the directory
  (`OrganizationUser`), the user's contacts (`PersonalContact`) and whoever they meet with (`ImplicitContact`, from
  the attendees of their calendars' events), each with `scoredEmailAddresses`; `$top` (default 10), `$skip`.
- Permissions: each route needs one of the permissions Graph documents for it (users: User.ReadBasic.All or a
  wider one, User.Read for oneself; the users delta: User.Read.All or Directory.Read.All; contacts: Contacts.Read,
  Contacts.ReadWrite to write; people: People.Read). A token whose grant named permissions and none of those is
  refused 403; with User.ReadBasic.All alone, properties outside the basic profile come back null.

Not emulated: contact folders, photos, extensions, `$search`, `$count`, `$orderby` on users, guests' invitations,
People's own ranking (a simple count stands for it).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from zoomcal.sandbox.common import ApiError, TokenBook

DELTA_DAYS = 7
USERS_PAGE, USERS_MAX = 100, 999
CONTACTS_PAGE = 10
PEOPLE_PAGE = 10
DEFAULT_USER = ("businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
                "preferredLanguage", "surname", "userPrincipalName", "id")
BASIC_USER = {"displayName", "givenName", "id", "mail", "photo", "securityIdentifier", "surname",
              "userPrincipalName"}
USER_PROPERTIES = {*DEFAULT_USER, "accountEnabled", "ageGroup", "city", "companyName", "country", "createdDateTime",
                   "department", "employeeId", "employeeType", "faxNumber", "imAddresses", "mailNickname",
                   "otherMails", "postalCode", "preferredName", "proxyAddresses", "securityIdentifier", "state",
                   "streetAddress", "usageLocation", "userType", "deletedDateTime", "showInAddressList"}
CONTACT_WRITABLE = ("givenName", "surname", "middleName", "displayName", "emailAddresses", "businessPhones",
                    "homePhones", "mobilePhone", "companyName", "jobTitle", "department", "nickName", "title",
                    "personalNotes", "categories", "fileAs", "imAddresses")
# which permissions each family of routes accepts (any one of them)
READ_USERS = {"user.readbasic.all", "user.read.all", "user.readwrite.all", "directory.read.all",
              "directory.readwrite.all"}
FULL_USERS = READ_USERS - {"user.readbasic.all"}
READ_CONTACTS = {"contacts.read", "contacts.readwrite"}
WRITE_CONTACTS = {"contacts.readwrite"}
READ_PEOPLE = {"people.read", "people.read.all"}


def _error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, {"error": {"code": code, "message": message,
                                       "innerError": {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                                                      "request-id": str(uuid.uuid4())}}})


def _encode(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str) -> dict | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _emails(entries: list[Any]) -> list[dict[str, str]]:
    """emailAddresses from addresses or (address, name) pairs."""
    return [{"name": e[1] or e[0], "address": e[0]} if not isinstance(e, str) else {"name": e, "address": e}
            for e in entries]


@dataclass
class DirectoryState:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)               # id -> user
    contacts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # owner (lower) -> id -> contact
    seq: int = 0
    users_epoch: int = 0          # bumped when Graph drops the users' sync state (-> 410 resyncRequired)
    contacts_epoch: int = 0       # bumped to invalidate every contacts delta token (-> 410 SyncStateNotFound)
    clock: Callable[[], float] = time.time      # wall-clock seconds: users delta links last DELTA_DAYS

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    # --- users ------------------------------------------------------------------------------------------
    def add_user(self, email: str, name: str = "", aliases: tuple[str, ...] = (), other_mails: tuple[str, ...] = (),
                 mail: str | None = None) -> dict[str, Any]:
        """A member of the organisation: `email` is their sign-in name and (unless `mail` says otherwise) their
        mailbox; `aliases` are more SMTP addresses of the mailbox."""
        given, _, surname = name.partition(" ")
        mailbox = email if mail is None else mail
        seq = self._next()
        user = {"id": str(uuid.uuid4()), "businessPhones": [], "displayName": name or email.split("@")[0],
                "givenName": given or None, "jobTitle": None, "mail": mailbox or None, "mobilePhone": None,
                "officeLocation": None, "preferredLanguage": "en-US", "surname": surname or None,
                "userPrincipalName": email, "accountEnabled": True, "userType": "Member",
                "createdDateTime": _now(), "mailNickname": email.split("@")[0],
                "proxyAddresses": ([f"SMTP:{mailbox}"] if mailbox else []) + [f"smtp:{a}" for a in aliases],
                "otherMails": list(other_mails), "imAddresses": [], "showInAddressList": True,
                "_seq": seq, "_created": seq, "_changes": []}
        self.users[user["id"]] = user
        return user

    def user(self, key: str) -> dict[str, Any] | None:
        """A live user by id or user principal name (any case)."""
        key_lower = key.lower()
        for user in self.users.values():
            if not user.get("_removed") and (user["id"] == key or str(user["userPrincipalName"]).lower() == key_lower):
                return user
        return None

    def update_user(self, key: str, **props: Any) -> dict[str, Any]:
        """Change a user's properties as an administrator would (the delta reports the ones that changed)."""
        user = self.user(key)
        if user is None:
            raise KeyError(key)
        changed = {k for k, v in props.items() if user.get(k) != v}
        user.update(props)
        if changed:
            user["_seq"] = self._next()
            user["_changes"].append((user["_seq"], sorted(changed)))
        return user

    def remove_user(self, key: str, permanent: bool = False) -> None:
        """Delete a user: into the recycle bin (`@removed` reason `changed`), or for good (`deleted`)."""
        user = self.user(key)
        if user is None:
            raise KeyError(key)
        user["_removed"] = "deleted" if permanent else "changed"
        user["_seq"] = self._next()

    def expire_delta_tokens(self) -> None:
        self.users_epoch += 1
        self.contacts_epoch += 1

    # --- contacts ---------------------------------------------------------------------------------------
    def folder(self, owner: str) -> dict[str, dict[str, Any]]:
        return self.contacts.setdefault(owner.lower(), {})

    def add_contact(self, owner: str, given: str = "", surname: str = "", emails: list[Any] | None = None,
                    phones: list[str] | None = None, **more: Any) -> dict[str, Any]:
        """A contact in the owner's Contacts folder. `emails`: addresses or (address, name) pairs."""
        contact = _new_contact(owner)
        _write_contact(contact, {"givenName": given or None, "surname": surname or None,
                                 "emailAddresses": _emails(emails or []), "businessPhones": phones or [], **more})
        self._touch(contact)
        self.folder(owner)[contact["id"]] = contact
        return contact

    def change_contact(self, owner: str, contact_id: str, **props: Any) -> dict[str, Any]:
        contact = self.folder(owner)[contact_id]
        if "emailAddresses" in props:
            props["emailAddresses"] = _emails(props["emailAddresses"])
        _write_contact(contact, props)
        return self._touch(contact)

    def delete_contact(self, owner: str, contact_id: str) -> None:
        contact = self.folder(owner)[contact_id]
        contact["_deleted"] = True
        contact["_seq"] = self._next()

    def _touch(self, contact: dict[str, Any]) -> dict[str, Any]:
        contact["_seq"] = self._next()
        contact["changeKey"] = base64.b64encode(f"EQAAABYAAA{contact['_seq']:010d}".encode()).decode()
        contact["@odata.etag"] = f'W/"{contact["changeKey"]}"'
        contact["lastModifiedDateTime"] = _now()
        return contact

    def seed(self, email: str, name: str = "") -> dict[str, Any]:
        """What a new sandbox user starts with: their directory entry (an alias among its proxy addresses), and
        Outlook contacts meant to exercise whoever reads them: one with two addresses, one with no address, one
        written in capitals with an internationalised domain."""
        local = email.split("@")[0]
        first, _, last = (name or local).partition(" ")
        domain = email.rpartition("@")[2]
        aliases = (f"{first}.{last}@{domain}".lower(),) if last else ()
        user = self.add_user(email, name or local, aliases)
        self.add_contact(email, "Margaret", "Hamilton", [("margaret@apollo.example", "Margaret Hamilton"),
                                                        ("maggie.h@home.example", "Maggie")], ["+1 617 555 0101"])
        self.add_contact(email, "Charles", "Babbage", [], ["+44 20 7946 0018"])
        self.add_contact(email, "Émilie", "du Châtelet", [("Emilie.DuChatelet@BÜCHER.example", "Émilie")])
        return user


def _new_contact(owner: str) -> dict[str, Any]:
    contact_id = "AAMkAD" + secrets.token_urlsafe(60).replace("_", "x") + "AAA="
    return {"id": contact_id, "createdDateTime": _now(), "lastModifiedDateTime": _now(), "changeKey": "",
            "categories": [], "parentFolderId": "AAMkADcontacts" + base64.b64encode(owner.lower().encode()).decode(),
            "birthday": None, "fileAs": "", "displayName": "", "givenName": None, "initials": None,
            "middleName": None, "nickName": None, "surname": None, "title": None, "yomiGivenName": None,
            "yomiSurname": None, "yomiCompanyName": None, "generation": None, "imAddresses": [], "jobTitle": None,
            "companyName": None, "department": None, "officeLocation": None, "profession": None,
            "businessHomePage": None, "assistantName": None, "manager": None, "homePhones": [], "mobilePhone": None,
            "businessPhones": [], "spouseName": None, "personalNotes": "", "children": [], "emailAddresses": [],
            "homeAddress": {}, "businessAddress": {}, "otherAddress": {}}


def _write_contact(contact: dict[str, Any], body: dict[str, Any]) -> None:
    """What a write sets on a contact; Outlook makes the display name of the name parts when none is given."""
    for key, value in body.items():
        if key in CONTACT_WRITABLE:
            contact[key] = value
    if "emailAddresses" in body:
        entries = body["emailAddresses"]
        if not isinstance(entries, list) or any(not isinstance(e, dict) for e in entries):
            raise _error(400, "ErrorInvalidProperty", "emailAddresses must be a collection of emailAddress.")
        contact["emailAddresses"] = [{"name": e.get("name") or e.get("address"), "address": e.get("address")}
                                     for e in entries]
    if "displayName" not in body and ({"givenName", "surname", "middleName"} & set(body)):
        contact["displayName"] = " ".join(p for p in (contact.get("givenName"), contact.get("middleName"),
                                                      contact.get("surname")) if p)
    contact["fileAs"] = contact.get("displayName") or ""


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}


class GraphLike(Protocol):
    """What these routes use of the Graph sandbox's state."""

    tokens: TokenBook
    lock: Any
    directory: DirectoryState
    events: dict[str, dict[str, dict[str, Any]]]
    owners: dict[str, str]


def _clauses(expr: str) -> list[Callable[[dict[str, Any]], bool]]:
    """A users `$filter`: `prop eq 'v'`, `prop in ('a', 'b')`, `startswith(prop, 'v')`, joined by `and`; strings
    compare whatever their case, as the directory compares them."""
    out: list[Callable[[dict[str, Any]], bool]] = []

    def norm(value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    def literal(text: str) -> Any:
        text = text.strip()
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1].replace("''", "'")
        return {"true": True, "false": False, "null": None}.get(text, text)

    for clause in re.split(r"\s+and\s+", expr.strip()):
        clause = clause.strip()
        if found := re.fullmatch(r"(\w+)\s+eq\s+('(?:[^']|'')*'|\S+)", clause):
            prop, value = found.group(1), norm(literal(found.group(2)))
            out.append(lambda u, p=prop, v=value: norm(u.get(p)) == v)
        elif found := re.fullmatch(r"(\w+)\s+in\s+\((.*)\)", clause):
            prop = found.group(1)
            values = {norm(literal(v)) for v in re.findall(r"'(?:[^']|'')*'|[^,\s]+", found.group(2))}
            out.append(lambda u, p=prop, vs=values: norm(u.get(p)) in vs)
        elif found := re.fullmatch(r"startswith\(\s*(\w+)\s*,\s*('(?:[^']|'')*')\s*\)", clause):
            prop, value = found.group(1), norm(literal(found.group(2)))
            out.append(lambda u, p=prop, v=value: isinstance(u.get(p), str) and norm(u[p]).startswith(v))
        else:
            raise _error(400, "Request_UnsupportedQuery", f"Unsupported or invalid query filter clause specified "
                         f"for property of resource 'User': {clause}")
    return out


def build_directory_router(state: GraphLike) -> APIRouter:
    # the calendar sandbox's request helpers (imported here: that module imports this one)
    from zoomcal.sandbox import graph as outlook

    router = APIRouter()
    directory = state.directory

    def caller(request: Request, allowed: set[str], code: str = "ErrorAccessDenied",
               self_only: set[str] = frozenset(), target: str = "") -> tuple[str, frozenset[str] | None]:
        """(the signed-in user, the lower-cased permissions their token carries, None when not limited); 403 when
        none of `allowed` is among them (`self_only` ones count when the request is about the caller)."""
        subject = state.tokens.subject(request)
        if subject is None:
            raise _error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        granted = state.tokens.granted(request)
        if granted is None:
            return subject, None
        lowered = frozenset(g.lower() for g in granted)
        about_self = target in ("me", "") or target.lower() == subject.lower() or \
            (directory.user(target) or {}).get("userPrincipalName", "").lower() == subject.lower()
        if not (lowered & allowed or (about_self and lowered & self_only)):
            message = "Insufficient privileges to complete the operation." if code.startswith("Authorization") \
                else "Access is denied. Check credentials and try again."
            raise _error(403, code, message)
        return subject, lowered

    def select(request: Request, default: tuple[str, ...]) -> list[str]:
        value = request.query_params.get("$select") or request.query_params.get("select")
        if not value:
            return list(default)
        wanted = [v.strip() for v in value.split(",") if v.strip()]
        for name in wanted:
            if name not in USER_PROPERTIES:
                raise _error(400, "Request_BadRequest", f"Could not find a property named '{name}' on type "
                             "'microsoft.graph.user'.")
        return ["id", *[w for w in wanted if w != "id"]]

    def served_user(user: dict[str, Any], props: list[str], granted: frozenset[str] | None,
                    subject: str) -> dict[str, Any]:
        basic_only = granted is not None and not granted & FULL_USERS and \
            str(user["userPrincipalName"]).lower() != subject.lower()
        return {p: (None if basic_only and p not in BASIC_USER else
                    json.loads(json.dumps(user.get(p)))) for p in props}

    def owner(request: Request, who: str, allowed: set[str]) -> str:
        """The mailbox whose contacts or people a request is about: only its owner reads them."""
        subject, _ = caller(request, allowed, target=who)
        if who == "me":
            return subject
        user = directory.user(who)
        if user is None:
            raise _error(404, "ErrorInvalidUser", f"The requested user '{who}' is invalid.")
        if str(user["userPrincipalName"]).lower() != subject.lower():
            raise _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return str(user["userPrincipalName"])

    # --- users ------------------------------------------------------------------------------------------
    @router.get("/v1.0/users")
    def list_users(request: Request):
        subject, granted = caller(request, READ_USERS, "Authorization_RequestDenied")
        props = select(request, DEFAULT_USER)
        q = request.query_params
        size = min(outlook._page_size(request, USERS_PAGE), USERS_MAX)
        page = _decode(q.get("skiptoken") or "") if q.get("skiptoken") else {"o": 0}
        if page is None:
            raise _error(400, "Directory_ExpiredPageToken", "The specified page token value has expired and can "
                         "no longer be included in your request.")
        with state.lock:
            users = [u for u in directory.users.values() if not u.get("_removed")]
            for test in _clauses(q.get("$filter") or q.get("filter") or "") if (q.get("$filter") or
                                                                                 q.get("filter")) else []:
                users = [u for u in users if test(u)]
            users.sort(key=lambda u: u["_created"])
            offset = int(page.get("o", 0))
            chunk = users[offset:offset + size]
            out: dict[str, Any] = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
                                   "value": [served_user(u, props, granted, subject) for u in chunk]}
            if offset + size < len(users):
                kept = [(k, v) for k, v in q.multi_items() if k not in ("skiptoken", "$skiptoken")]
                out["@odata.nextLink"] = f"{outlook._asked(request)}?" + urlencode(
                    [*kept, ("$skiptoken", _encode({"o": offset + size}))])
            return JSONResponse(out)

    @router.get("/v1.0/users/delta")
    def users_delta(request: Request):
        subject, granted = caller(request, FULL_USERS, "Authorization_RequestDenied")
        q = request.query_params
        token = q.get("deltatoken") or q.get("skiptoken") or ""
        now = directory.clock()
        with state.lock:
            if token:
                data = _decode(token)
                if data is None or data.get("kind") != "users":
                    raise _error(400, "Request_BadRequest", "Badly formed token.")
                if data.get("epoch") != directory.users_epoch:
                    raise _error(410, "resyncRequired", "Resync required. Replace any local cached data with a "
                                 "full delta sync.")
                if q.get("deltatoken") and now - float(data.get("at", 0)) > DELTA_DAYS * 86400:
                    raise _error(400, "syncStateNotFound", "The sync state generation is not found. The delta "
                                 "token is expired and data must be synchronized again.")
                since, after, props, upto = data["since"], data.get("after", 0), data["select"], data.get("upto")
                issued = float(data.get("at", now))
            else:
                since, after, props, upto, issued = 0, 0, select(request, DEFAULT_USER), None, now
            upto = directory.seq if upto is None else upto
            size = outlook._page_size(request, USERS_PAGE)
            rows: list[tuple[int, dict[str, Any]]] = []
            for user in sorted(directory.users.values(), key=lambda u: u["_seq"]):
                if user["_seq"] <= max(since, after):
                    continue
                if user.get("_removed"):
                    if since and user["_created"] <= since:
                        rows.append((user["_seq"], {"@odata.type": "#microsoft.graph.user", "id": user["id"],
                                                    "@removed": {"reason": user["_removed"]}}))
                    continue
                if not since or user["_created"] > since:
                    rows.append((user["_seq"], served_user(user, props, granted, subject)))
                    continue
                changed = {p for seq, names in user["_changes"] if seq > since for p in names} & set(props)
                if changed:      # only changes to selected properties are tracked
                    rows.append((user["_seq"], {"id": user["id"], **{
                        p: v for p, v in served_user(user, props, granted, subject).items() if p in changed}}))
            chunk = rows[:size]
            base = outlook._asked(request)
            out: dict[str, Any] = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
                                   "value": [row for _, row in chunk]}
            link = {"kind": "users", "epoch": directory.users_epoch, "select": props, "since": since, "upto": upto}
            if len(rows) > size:
                out["@odata.nextLink"] = f"{base}?$skiptoken=" + _encode({**link, "after": chunk[-1][0],
                                                                          "at": issued})
            else:
                out["@odata.deltaLink"] = f"{base}?$deltatoken=" + _encode({**link, "since": upto, "upto": None,
                                                                            "at": now})
            return JSONResponse(out)

    @router.get("/v1.0/users/{who}")
    def get_user(who: str, request: Request):
        subject, granted = caller(request, READ_USERS, "Authorization_RequestDenied", {"user.read"}, who)
        props = select(request, DEFAULT_USER)
        with state.lock:
            user = directory.user(subject if who == "me" else who)
            if user is None:
                raise _error(404, "Request_ResourceNotFound", f"Resource '{who}' does not exist or one of its "
                             "queried reference-property objects are not present.")
            return served_user(user, props, granted, subject)

    # --- contacts ---------------------------------------------------------------------------------------
    def asked_select(request: Request) -> str | None:
        return request.query_params.get("$select") or request.query_params.get("select")

    def contact_select(item: dict[str, Any], fields: str | None) -> dict[str, Any]:
        out = _public(item)
        if fields:
            wanted = {v.strip().lower() for v in fields.split(",")} | {"id", "@odata.etag"}
            out = {k: v for k, v in out.items() if k.lower() in wanted}
        return out

    @router.get("/v1.0/users/{who}/contacts/delta")
    def contacts_delta(who: str, request: Request):
        q = request.query_params
        with state.lock:
            mailbox = owner(request, who, READ_CONTACTS)
            token = q.get("deltatoken") or q.get("skiptoken") or ""
            if token:
                data = _decode(token)
                if data is None or data.get("kind") != "contacts" or data.get("owner") != mailbox.lower() or \
                        data.get("epoch") != directory.contacts_epoch:
                    raise _error(410, "SyncStateNotFound", "The sync state generation is not found.")
                since, after, fields, upto = data["since"], data.get("after", 0), data.get("select"), data.get("upto")
            else:
                since, after, upto, fields = 0, 0, None, asked_select(request)
            upto = directory.seq if upto is None else upto
            size = outlook._page_size(request, CONTACTS_PAGE)
            rows = []
            for contact in sorted(directory.folder(mailbox).values(), key=lambda c: c["_seq"]):
                if contact["_seq"] <= max(since, after):
                    continue
                if contact.get("_deleted"):
                    if since:
                        rows.append((contact["_seq"], {"@odata.type": "#microsoft.graph.contact",
                                                       "id": contact["id"], "@removed": {"reason": "deleted"}}))
                    continue
                rows.append((contact["_seq"], contact))
            chunk = rows[:size]
            out: dict[str, Any] = {"value": [row if "@removed" in row else contact_select(row, fields)
                                             for _, row in chunk]}
            link = {"kind": "contacts", "owner": mailbox.lower(), "epoch": directory.contacts_epoch, "since": since,
                    "upto": upto, "select": fields}
            base = outlook._asked(request)
            if len(rows) > size:
                out["@odata.nextLink"] = f"{base}?$skiptoken=" + _encode({**link, "after": chunk[-1][0]})
            else:
                out["@odata.deltaLink"] = f"{base}?$deltatoken=" + _encode({**link, "since": upto, "upto": None})
            return JSONResponse(out)

    @router.get("/v1.0/users/{who}/contacts")
    def list_contacts(who: str, request: Request):
        q = request.query_params
        with state.lock:
            mailbox = owner(request, who, READ_CONTACTS)
            items = sorted((c for c in directory.folder(mailbox).values() if not c.get("_deleted")),
                           key=lambda c: c["createdDateTime"] + c["id"])
            size = outlook._page_size(request, CONTACTS_PAGE)
            try:
                skip = int(q.get("$skip") or q.get("skip") or 0)
            except ValueError as exc:
                raise _error(400, "BadRequest", "Invalid $skip.") from exc
            out: dict[str, Any] = {"value": [contact_select(c, asked_select(request)) for c in items[skip:skip + size]]}
            if skip + size < len(items):
                kept = [(k, v) for k, v in q.multi_items() if k not in ("$skip", "skip")]
                out["@odata.nextLink"] = f"{outlook._asked(request)}?" + urlencode([*kept, ("$skip", skip + size)])
            return JSONResponse(out)

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError as exc:
            raise _error(400, "BadRequest", "Unable to read JSON request payload.") from exc
        if not isinstance(body, dict):
            raise _error(400, "BadRequest", "Unable to read JSON request payload.")
        return body

    @router.post("/v1.0/users/{who}/contacts", status_code=201)
    async def create_contact(who: str, request: Request):
        body = await body_of(request)
        with state.lock:
            mailbox = owner(request, who, WRITE_CONTACTS)
            contact = _new_contact(mailbox)
            _write_contact(contact, body)
            directory._touch(contact)
            directory.folder(mailbox)[contact["id"]] = contact
            return JSONResponse(_public(contact), status_code=201)

    def one_contact(mailbox: str, contact_id: str) -> dict[str, Any]:
        contact = directory.folder(mailbox).get(contact_id)
        if contact is None or contact.get("_deleted"):
            raise _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return contact

    @router.get("/v1.0/users/{who}/contacts/{contact_id}")
    def get_contact(who: str, contact_id: str, request: Request):
        with state.lock:
            return contact_select(one_contact(owner(request, who, READ_CONTACTS), contact_id), asked_select(request))

    @router.patch("/v1.0/users/{who}/contacts/{contact_id}")
    async def patch_contact(who: str, contact_id: str, request: Request):
        body = await body_of(request)
        with state.lock:
            contact = one_contact(owner(request, who, WRITE_CONTACTS), contact_id)
            wanted = request.headers.get("if-match")
            if wanted and wanted != "*" and wanted != contact["@odata.etag"]:
                raise _error(412, "ErrorIrresolvableConflict", "The change key passed in the request does not "
                             "match the current change key for the item.")
            _write_contact(contact, body)
            return _public(directory._touch(contact))

    @router.delete("/v1.0/users/{who}/contacts/{contact_id}", status_code=204)
    def delete_contact(who: str, contact_id: str, request: Request):
        with state.lock:
            mailbox = owner(request, who, WRITE_CONTACTS)
            one_contact(mailbox, contact_id)
            directory.delete_contact(mailbox, contact_id)
            return Response(status_code=204)

    # --- people -----------------------------------------------------------------------------------------
    def relevant(mailbox: str) -> list[dict[str, Any]]:
        """The people relevant to a mailbox's owner, most relevant first."""
        met: dict[str, tuple[int, str, str]] = {}     # lower-cased address -> (meetings, name, address as written)
        for key, events in state.events.items():
            if state.owners.get(key, "").lower() != mailbox.lower():
                continue
            for event in events.values():
                for attendee in event.get("attendees") or []:
                    found = (attendee or {}).get("emailAddress") or {}
                    address = str(found.get("address") or "")
                    if address and address.lower() != mailbox.lower():
                        count, name, written = met.get(address.lower(),
                                                       (0, str(found.get("name") or address), address))
                        met[address.lower()] = (count + 1, name, written)
        people: dict[str, dict[str, Any]] = {}     # lower-cased first address -> person

        def add(pid: str, addresses: list[str], score: float, subclass: str, **names: Any) -> None:
            key = addresses[0].lower() if addresses else pid
            if key in people:
                people[key]["_score"] += score
                return
            people[key] = {"id": pid, "displayName": names.get("displayName"), "givenName": names.get("givenName"),
                           "surname": names.get("surname"), "birthday": "", "personNotes": "", "isFavorite": False,
                           "jobTitle": names.get("jobTitle"), "companyName": None, "yomiCompany": "",
                           "department": None, "officeLocation": None, "profession": "",
                           "userPrincipalName": names.get("userPrincipalName") or "", "imAddress": None,
                           "scoredEmailAddresses": [{"address": a, "relevanceScore": 0.0,
                                                     "selectionLikelihood": "notSpecified"} for a in addresses],
                           "phones": [{"type": "business", "number": p} for p in names.get("phones") or []],
                           "postalAddresses": [], "websites": [],
                           "personType": {"class": "Person", "subclass": subclass}, "_score": score}

        for user in directory.users.values():
            if user.get("_removed") or str(user["userPrincipalName"]).lower() == mailbox.lower():
                continue
            add(user["id"], [user["mail"]] if user.get("mail") else [], 5.0, "OrganizationUser",
                displayName=user.get("displayName"), givenName=user.get("givenName"), surname=user.get("surname"),
                jobTitle=user.get("jobTitle"), userPrincipalName=user.get("userPrincipalName"),
                phones=user.get("businessPhones"))
        for contact in directory.folder(mailbox).values():
            if contact.get("_deleted"):
                continue
            add(contact["id"], [str(e.get("address")) for e in contact.get("emailAddresses") or [] if e.get("address")],
                10.0, "PersonalContact", displayName=contact.get("displayName"), givenName=contact.get("givenName"),
                surname=contact.get("surname"), phones=contact.get("businessPhones"))
        for address, (count, name, written) in met.items():
            add(str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{address}")), [written], 20.0 * count,
                "ImplicitContact", displayName=name)
        ranked = sorted(people.values(), key=lambda p: (-p["_score"], str(p["displayName"] or ""), p["id"]))
        for person in ranked:
            for scored in person["scoredEmailAddresses"]:
                scored["relevanceScore"] = person["_score"]
        return [_public(p) for p in ranked]

    @router.get("/v1.0/users/{who}/people")
    def people(who: str, request: Request):
        q = request.query_params
        with state.lock:
            mailbox = owner(request, who, READ_PEOPLE)
            items = relevant(mailbox)
            size = outlook._page_size(request, PEOPLE_PAGE)
            try:
                skip = int(q.get("$skip") or q.get("skip") or 0)
            except ValueError as exc:
                raise _error(400, "BadRequest", "Invalid $skip.") from exc
            value = q.get("$select") or q.get("select")
            wanted = {v.strip().lower() for v in value.split(",")} | {"id"} if value else None
            out: dict[str, Any] = {"value": [{k: v for k, v in p.items() if wanted is None or k.lower() in wanted}
                                             for p in items[skip:skip + size]]}
            if skip + size < len(items):
                kept = [(k, v) for k, v in q.multi_items() if k not in ("$skip", "skip")]
                out["@odata.nextLink"] = f"{outlook._asked(request)}?" + urlencode([*kept, ("$skip", skip + size)])
            return JSONResponse(out)

    return router
