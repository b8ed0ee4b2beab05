"""B10 — the contacts directory at scale.

Resolution: 100,000 contact records from four sources (Zoom's users, a Workspace directory, Outlook contacts, a
CardDAV address book) about 40,000 humans — addresses in mixed case, some records with a second address that
joins two others, a few hundred without a usable address — resolved into people by zoomcal, against a plain dict
grouping the records by their lower-cased first address, in the same run. Target <= 3x. A record's addresses are
normalised once, when its source delivers it (the stored record keeps the normal forms); that step is timed
apart and reported beside the ratio.

Search: prefix queries (name words, address starts, one to six characters) over the 100,000-person index
zoomcal builds, p99 of single queries against a linear scan doing the same prefix test, in the same run.
Target: p99 < 20 ms."""

from __future__ import annotations

import random
import time

from benchmarks.common import Result, best_of
from zoomcal.connectors.contacts import CONTACT, USER, ContactRecord
from zoomcal.contacts.resolve import SourceRecord, normal_forms, resolve
from zoomcal.contacts.search import Entry, SearchIndex

RECORDS = 100_000
HUMANS = 40_000
SOURCES = (("zoom", USER), ("graph-contacts", USER), ("google-contacts", CONTACT), ("carddav", CONTACT))
FIRST = ("Ada", "Grace", "Alan", "Katherine", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret",
         "Ken", "Radia", "Tim", "Hedy", "Claude", "Sophie", "Linus", "Anita", "Dennis", "Joan")
LAST = ("Lovelace", "Hopper", "Turing", "Johnson", "Dijkstra", "Liskov", "Knuth", "Allen", "McCarthy", "Hamilton",
        "Thompson", "Perlman", "Berners-Lee", "Lamarr", "Shannon", "Wilson", "Torvalds", "Borg", "Ritchie", "Clarke")


def corpus(records: int = RECORDS, humans: int = HUMANS, seed: int = 10) -> list[SourceRecord]:
    rnd = random.Random(seed)
    out = []
    for n in range(records):
        h = rnd.randrange(humans)
        name = f"{FIRST[h % 20]} {LAST[(h // 20) % 20]} {h}"
        provider, kind = SOURCES[n % 4]
        address = f"{name.split()[0].lower()}.{h}@{'example.com' if h % 3 else 'corp.example'}"
        emails = [address.upper() if rnd.random() < 0.2 else address]
        if rnd.random() < 0.05:
            emails.append(f"h{rnd.randrange(humans)}@alias.example")
        if rnd.random() < 0.003:
            emails = ["not an address"]
        out.append(SourceRecord(f"{n % 4}/{n}", provider, ContactRecord(str(n), kind, tuple(emails), name)))
    return out


def dict_grouping(records: list[SourceRecord]) -> dict[str, list[SourceRecord]]:
    groups: dict[str, list[SourceRecord]] = {}
    for r in records:
        if r.record.emails:
            groups.setdefault(r.record.emails[0].lower(), []).append(r)
    return groups


def queries(entries: list[Entry], count: int, seed: int = 11) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        e = entries[rnd.randrange(len(entries))]
        word = rnd.choice([*e.name.split(), e.primary_email])
        out.append(word[:rnd.randint(1, 6)])
    return out


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(records: int = RECORDS, humans: int = HUMANS, searches: int = 500) -> dict[str, float]:
    data = corpus(records, humans)
    normalise = best_of(lambda: [normal_forms(r.record.emails) for r in data], 2)
    ours = best_of(lambda: resolve(data), 2)
    plain = best_of(lambda: dict_grouping(data), 3)
    result = resolve(data)
    entries = [Entry(p.id, p.display_name, p.primary_email, p.emails) for p in result.people]
    while len(entries) < records:          # the search index over as many people as records
        entries.extend(Entry(f"{e.person_id}-{len(entries)}", e.name, e.primary_email, e.emails)
                       for e in entries[:records - len(entries)])
    index = SearchIndex(entries)
    asked = queries(entries, searches)
    ours_times, scan_times = [], []
    for text in asked:
        start = time.perf_counter()
        index.search(text, 10)
        ours_times.append(time.perf_counter() - start)
    lowered = [(e.name.lower().split(), e.emails) for e in entries]
    for text in asked[:50]:
        start = time.perf_counter()
        query = text.lower()
        [i for i, (words, emails) in enumerate(lowered)
         if any(w.startswith(query) for w in words) or any(a.startswith(query) for a in emails)][:10]
        scan_times.append(time.perf_counter() - start)
    return {"resolve": ours, "grouping": plain, "normalise": normalise, "people": len(result.people),
            "problems": len(result.problems),
            "search_p99": quantile(ours_times, 0.99), "scan_p99": quantile(scan_times, 0.99)}


def run() -> list[Result]:
    got = measure()
    ratio = got["resolve"] / got["grouping"]
    p99_ms, scan_ms = got["search_p99"] * 1000, got["scan_p99"] * 1000
    return [
        Result(f"B10 resolve {RECORDS:,} contact records from four sources vs a dict grouping by lower-cased "
               "e-mail", got["resolve"], got["grouping"], ratio, "<= 3.0", ratio <= 3.0, "s",
               f"{got['people']:,} people, {got['problems']} unmapped; normalising the addresses when read: "
               f"{got['normalise'] / RECORDS * 1e6:.1f} µs a record"),
        Result(f"B10 contacts search p99 over {RECORDS:,} people (value <= 20 ms) vs a linear scan",
               p99_ms, scan_ms, p99_ms / scan_ms, "value <= 20", p99_ms <= 20.0, "ms"),
    ]
