"""Identity resolution: addresses make one person, names never do; users anchor their records; an admin's merges
and splits hold; unmappable records are problems with reasons; the result is independent of input order."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoomcal.connectors.contacts import CONTACT, OTHER, USER, ContactRecord
from zoomcal.contacts.identity import NotAnAddress, name_key, normalize
from zoomcal.contacts.resolve import (
    ContactRules,
    Decisions,
    SourceRecord,
    UserRef,
    normal_forms,
    of_stored,
    resolve,
)


def rec(key: str, *emails: str, name: str = "", provider: str = "google-contacts", kind: str = CONTACT,
        **extra) -> SourceRecord:
    return SourceRecord(key, provider, ContactRecord(key.split("/", 1)[1], kind, tuple(emails), name, **extra))


@pytest.mark.parametrize("text, normal", [
    ("Ada@Example.COM", "ada@example.com"),
    ("  mailto:ada@example.com ", "ada@example.com"),
    ("ada@Bücher.example", "ada@xn--bcher-kva.example"),
    ("ada@xn--bcher-kva.example", "ada@xn--bcher-kva.example"),
    ("Jos\u0065\u0301@example.com", "jos\u00e9@example.com"),        # decomposed é: NFC
    ("JOSÉ@example.com", "josé@example.com"),
    ("ada@example.com.", "ada@example.com"),
])
def test_addresses_have_one_normal_form(text, normal):
    assert normalize(text) == normal


@pytest.mark.parametrize("text", ["", "ada", "@example.com", "ada@", "ada@@example.com", "a b@example.com",
                                  "ada@example", "ada..b@example.com", ".ada@example.com", "ada@-x.example",
                                  "x" * 65 + "@example.com", "ada@" + "a" * 250 + ".com", "ada@exa mple.com"])
def test_what_is_no_address_says_why(text):
    with pytest.raises(NotAnAddress) as caught:
        normalize(text)
    assert str(caught.value)


def test_records_sharing_any_address_are_one_person_and_a_user_anchors_them():
    users = [UserRef(1, "ada@example.com", "Ada Lovelace", "Europe/London", aliases=("countess@example.com",))]
    records = [
        rec("g/1", "ADA@example.com", name="Ada L."),
        rec("m/7", "Countess@Example.com", "ada.work@example.org", name="Ada (work)", provider="graph-contacts"),
        rec("c/3", "ada.work@example.org", name="A. Lovelace", provider="carddav"),     # only through m/7
        rec("z/u1", "grace@example.com", name="Grace Hopper", provider="zoom", kind=USER, zoom_user_id="Zg",
            presence="Busy"),
        rec("g/2", "grace@example.com", name="Amazing Grace"),
    ]
    result = resolve(records, users)
    assert [p.id for p in result.people] == sorted(p.id for p in result.people)
    ada = result.person_of("g/1")
    assert ada.id == "u1" and ada.user_id == 1 and set(ada.records) == {"g/1", "m/7", "c/3"}
    assert ada.display_name == "Ada Lovelace" and ada.name_from == "user:1"      # the profile's name wins
    assert ada.primary_email == "ada@example.com" and ada.timezone == "Europe/London"
    assert ada.emails == ("ada.work@example.org", "ada@example.com", "countess@example.com")
    grace = result.person_of("g/2")
    assert grace.user_id is None and set(grace.records) == {"z/u1", "g/2"}
    assert (grace.display_name, grace.zoom_user_id, grace.presence) == ("Grace Hopper", "Zg", "Busy")
    why = {(link.why, link.address) for link in result.links_of(ada)}
    assert ("address", "countess@example.com") in why and ("address", "ada.work@example.org") in why
    assert result.problems == []


def test_a_name_alone_never_merges_it_only_suggests():
    records = [rec("g/1", "jo@one.example", name="Jo Smith"), rec("m/1", "jo@two.example", name="JO  SMITH",
                                                                   provider="graph-contacts")]
    result = resolve(records)
    assert len(result.people) == 2
    (suggestion,) = result.suggestions
    assert {suggestion.a, suggestion.b} == {p.id for p in result.people}
    assert name_key("JO  SMITH") == name_key("Jo Smith")


def test_records_that_cannot_be_mapped_are_problems_with_reasons():
    users = [UserRef(1, "a@example.com"), UserRef(2, "b@example.com", aliases=("shared@example.com",)),
             UserRef(3, "c@example.com", aliases=("shared@example.com",))]
    records = [rec("g/none", name="Nobody"), rec("g/bad", "not an address", name="Bad"),
               rec("g/half", "half@example.com", "also bad", name="Half"),
               rec("g/two", "a@example.com", "b@example.com", name="Two users"),
               rec("g/shared", "shared@example.com", name="Shared")]
    result = resolve(records, users)
    kinds = {(p.record, p.kind) for p in result.problems}
    assert ("g/none", "no_address") in kinds and ("g/bad", "no_address") in kinds
    assert ("g/bad", "malformed") in kinds and ("g/half", "malformed") in kinds
    assert ("g/two", "conflict") in kinds and ("user:2", "conflict") in kinds and ("user:3", "conflict") in kinds
    assert result.person_of("g/half") is not None                   # one good address: still a person
    assert result.person_of("g/two") is None and result.person_of("g/none") is None
    # the claimed address joins nobody to either user, and is nobody's
    assert result.person_of("g/shared") is None and ("g/shared", "conflict") in kinds
    assert not any("shared@example.com" in p.emails for p in result.people)
    assert all(p.reason for p in result.problems)


def test_a_chain_of_records_never_joins_two_users():
    users = [UserRef(1, "a@example.com"), UserRef(2, "b@example.com")]
    records = [rec("g/1", "a@example.com", "z@example.com"), rec("g/2", "z@example.com", "b@example.com"),
               rec("g/3", "z@example.com", "q@example.com")]
    result = resolve(records, users)
    assert all(sum(1 for r in p.records if r in ("g/1", "g/2")) <= 1 or p.user_id is None for p in result.people)
    assert result.person_of("g/1").user_id == 1 and result.person_of("g/2").user_id == 2
    assert any(p.kind == "conflict" and "z@example.com" in p.reason for p in result.problems)


def test_an_admins_merge_and_split_hold_and_never_join_two_users():
    users = [UserRef(1, "a@example.com", "A"), UserRef(2, "b@example.com", "B")]
    records = [rec("g/1", "a@example.com", name="A one"), rec("m/1", "a.private@example.net", name="A private"),
               rec("c/1", "a@example.com", name="Someone else", provider="carddav"),
               rec("g/none", name="No address")]
    decisions = Decisions(merges=frozenset({("m/1", "user:1"), ("g/none", "m/1"), ("user:1", "user:2")}),
                          splits=frozenset({"c/1"}))
    result = resolve(records, users, decisions)
    a = result.person_of("user:1")
    assert set(a.records) == {"g/1", "m/1", "g/none"} and "a.private@example.net" in a.emails
    assert result.person_of("c/1").user_id is None                 # split: stands alone
    assert result.person_of("user:2").user_id == 2                 # the merge of two users was refused
    assert any("would join two users" in p.reason for p in result.problems)
    assert any(link.why == "merged by hand" for link in result.links_of(a))


def test_which_name_wins_is_a_rule():
    records = [rec("z/1", "x@example.com", name="Zoom Name", provider="zoom", kind=USER),
               rec("g/1", "x@example.com", name="Google Name")]
    assert resolve(records).people[0].display_name == "Zoom Name"
    rules = ContactRules(name_from=("google-contacts", "zoom"))
    assert resolve(records, rules=rules).people[0].display_name == "Google Name"


def test_may_invite_follows_the_admins_word():
    records = [rec("g/1", "x@example.com", name="X"), rec("g/2", "y@example.com", name="Y")]
    result = resolve(records, decisions=Decisions(no_invite=frozenset({"y@example.com"})))
    assert {p.primary_email: p.invitable for p in result.people} == {"x@example.com": True, "y@example.com": False}


ADDRESSES = [f"{n}@{d}" for n in ("ada", "Ada", "bob", "cy", "dee") for d in ("example.com", "EXAMPLE.com",
                                                                              "bücher.example")]
record_strategy = st.builds(
    lambda i, emails, name, provider, kind: rec(f"s{i % 3}/{i}", *emails, name=name, provider=provider, kind=kind),
    st.integers(0, 40), st.lists(st.sampled_from([*ADDRESSES, "broken", ""]), max_size=3),
    st.sampled_from(["", "Ada Lovelace", "Bob", "ada lovelace"]),
    st.sampled_from(["zoom", "google-contacts", "graph-contacts", "carddav"]), st.sampled_from([USER, CONTACT, OTHER]))


def _canonical(result):
    return ([(p.id, p.user_id, p.primary_email, p.emails, p.display_name, p.records, p.invitable)
             for p in result.people], result.problems, result.suggestions)


@settings(max_examples=150, deadline=None)
@given(st.lists(record_strategy, max_size=25, unique_by=lambda r: r.key),
       st.lists(st.sampled_from(ADDRESSES), max_size=3, unique_by=str.lower), st.randoms(use_true_random=False))
def test_resolution_is_deterministic_idempotent_and_independent_of_order(records, user_emails, rnd):
    users = [UserRef(i + 1, e, f"User {i}") for i, e in enumerate(user_emails)]
    first = resolve(records, users)
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert _canonical(resolve(shuffled, list(reversed(users)))) == _canonical(first)
    assert _canonical(resolve(records, users)) == _canonical(first)
    # every record is either in exactly one person or named by a problem
    placed = [r for p in first.people for r in p.records]
    assert len(placed) == len(set(placed))
    problem_records = {p.record for p in first.problems}
    assert {r.key for r in records} <= set(placed) | problem_records
    # no two people share an address, and no person holds two users
    seen: dict[str, str] = {}
    for p in first.people:
        for a in p.emails:
            assert seen.setdefault(a, p.id) == p.id, (a, p.id, seen[a])


def test_a_hundred_thousand_records_resolve_into_the_expected_people():
    rnd = random.Random(5)
    records = []
    for i in range(20_000):
        for source in ("zoom", "google-contacts", "graph-contacts", "carddav", "google-contacts"):
            if rnd.random() < 0.8:
                email = f"Person{i}@Example.com" if rnd.random() < 0.5 else f"person{i}@example.com"
                records.append(rec(f"{source}-{len(records) % 2}/{len(records)}", email, name=f"Person {i}",
                                   provider=source))
    result = resolve(records)
    people = {p.primary_email for p in result.people}
    assert len(people) == len(result.people) == len({r.record.emails[0].lower() for r in records})


def test_search_ranks_exact_address_then_name_then_words_each_person_once():
    from zoomcal.contacts.search import Entry, SearchIndex

    index = SearchIndex([
        Entry("p1", "Ann Smith", "ann@example.com", ("ann@example.com", "a.smith@old.example")),
        Entry("p2", "Bob Annersley", "bob@example.com", ("bob@example.com",)),
        Entry("p3", "Annabel Lee", "lee@example.com", ("ann.lee@example.org", "lee@example.com")),
        Entry("p4", "Carl Jones", "carl@example.com", ("carl@example.com", "ann@example.org")),
    ])
    assert [e.person_id for e in index.search("ann@example.org")] == ["p4"]          # the exact address
    assert [e.person_id for e in index.search("Ann")] == ["p1", "p3", "p2", "p4"]     # names, words, addresses
    assert [e.person_id for e in index.search("ann", limit=2)] == ["p1", "p3"]
    assert [e.person_id for e in index.search("smi")] == ["p1"]                       # a local part's word
    assert index.search("zz") == [] and index.search("   ") == []


def test_a_stored_record_keeps_its_normal_forms_and_stale_ones_are_worked_out_again():
    record = ContactRecord("1", CONTACT, ("Ada@Example.COM", "not an address", "ada@Bücher.example"), "Ada")
    stored = normal_forms(record.emails)
    kept = of_stored("g/1", "google-contacts", record, stored)
    assert kept == SourceRecord("g/1", "google-contacts", record)
    assert kept.addresses == ("ada@example.com", "ada@xn--bcher-kva.example")
    assert [text for text, _reason in kept.malformed] == ["not an address"]
    # what a stored record says is what resolving uses (it is never parsed again) ...
    assert of_stored("g/1", "google-contacts", record, {**stored, "addresses": ["x@example.org"]}).addresses \
        == ("x@example.org",)
    # ... unless it came from another version of the normal form, or is missing
    for stale in ({**stored, "v": 0, "addresses": ["x@example.org"]}, None, "junk"):
        assert of_stored("g/1", "google-contacts", record, stale).addresses == kept.addresses
