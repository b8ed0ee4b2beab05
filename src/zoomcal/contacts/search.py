"""Prefix search over the directory: what the scheduling form asks as a person types.

Every person is found by a prefix of any word of their name, of any of their addresses, or of an address's
local part. Results are ranked: an exact address first, then a prefix of the whole name, of the primary
address, of a name word, of another address; ties by name. Built once per directory revision; a query is a
binary search per index plus the ranking of what matched."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from zoomcal.contacts.identity import name_key

# rank of a match (lower first)
EXACT, FULL_NAME, PRIMARY, NAME_WORD, ADDRESS = range(5)
MAX_MATCHES = 5000      # a one-letter query stops collecting here (it is ranked among these)


@dataclass(frozen=True)
class Entry:
    person_id: str
    name: str
    primary_email: str
    emails: tuple[str, ...]


class SearchIndex:
    def __init__(self, entries: list[Entry]):
        self.entries = entries
        keys: list[tuple[str, int, int]] = []      # (text, rank, entry index)
        for i, e in enumerate(entries):
            full = name_key(e.name)
            if full:
                keys.append((full, FULL_NAME, i))
                keys.extend((word, NAME_WORD, i) for word in set(full.split()[1:]))
            for address in e.emails:
                keys.append((address, PRIMARY if address == e.primary_email else ADDRESS, i))
                local = address.split("@", 1)[0]
                for part in {p for p in local.replace("_", ".").replace("-", ".").split(".")[1:] if p}:
                    keys.append((part, ADDRESS, i))
        keys.sort()
        self.texts = [k[0] for k in keys]
        self.keys = keys

    def __len__(self) -> int:
        return len(self.entries)

    def search(self, text: str, limit: int = 10) -> list[Entry]:
        query = name_key(text)
        if not query or limit <= 0:
            return []
        best: dict[int, tuple[int, str]] = {}
        lo = bisect.bisect_left(self.texts, query)
        hi = bisect.bisect_left(self.texts, query + "\uffff", lo)
        for key_text, rank, i in self.keys[lo:min(hi, lo + MAX_MATCHES)]:
            if rank in (PRIMARY, ADDRESS) and key_text == query:
                rank = EXACT
            if i not in best or rank < best[i][0]:
                best[i] = (rank, name_key(self.entries[i].name))
        ranked = sorted(best.items(), key=lambda item: (item[1][0], item[1][1], self.entries[item[0]].person_id))
        return [self.entries[i] for i, _ in ranked[:limit]]
