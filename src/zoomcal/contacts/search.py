"""Prefix search over the directory: what the scheduling form asks as a person types.

Every person is found by a prefix of any word of their name, of any of their addresses, or of an address's
local part. Results are ranked: an exact address first, then a prefix of the whole name, of the primary
address, of a name word, of another address; within a rank in the order of the text matched. Built once per
directory revision; a query is a binary search per rank and a walk of at most `limit` people past it."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from zoomcal.contacts.identity import name_key

# rank of a match (lower first)
EXACT, FULL_NAME, PRIMARY, NAME_WORD, ADDRESS = range(5)


@dataclass(frozen=True)
class Entry:
    person_id: str
    name: str
    primary_email: str
    emails: tuple[str, ...]


class SearchIndex:
    def __init__(self, entries: list[Entry]):
        self.entries = entries
        keys: dict[int, list[tuple[str, int]]] = {FULL_NAME: [], PRIMARY: [], NAME_WORD: [], ADDRESS: []}
        for i, e in enumerate(entries):
            full = name_key(e.name)
            if full:
                keys[FULL_NAME].append((full, i))
                keys[NAME_WORD].extend((word, i) for word in set(full.split()[1:]))
            for address in e.emails:
                keys[PRIMARY if address == e.primary_email else ADDRESS].append((address, i))
                local = address.split("@", 1)[0]
                keys[ADDRESS].extend((part, i) for part in {p for p in local.replace("_", ".").replace("-", ".")
                                                              .split(".")[1:] if p})
        # per rank: the texts in order, and whose they are
        self.ranks = []
        for rank in (FULL_NAME, PRIMARY, NAME_WORD, ADDRESS):
            pairs = sorted(keys[rank])
            self.ranks.append((rank, [t for t, _ in pairs], [i for _, i in pairs]))

    def __len__(self) -> int:
        return len(self.entries)

    def search(self, text: str, limit: int = 10) -> list[Entry]:
        """Best first: an exact address, then a prefix of the whole name, of the primary address, of a name word,
        of another address; within one rank in the order of the text matched. Each person once."""
        query = name_key(text)
        if not query or limit <= 0:
            return []
        found: list[int] = []
        seen: set[int] = set()
        for rank, texts, owners in self.ranks:       # exact addresses first
            if rank in (PRIMARY, ADDRESS):
                lo = bisect.bisect_left(texts, query)
                while lo < len(texts) and texts[lo] == query and len(found) < limit:
                    if owners[lo] not in seen:
                        seen.add(owners[lo])
                        found.append(owners[lo])
                    lo += 1
        end = query + "\uffff"
        for _rank, texts, owners in self.ranks:
            if len(found) >= limit:
                break
            lo = bisect.bisect_left(texts, query)
            hi = bisect.bisect_left(texts, end, lo)
            for pos in range(lo, hi):
                i = owners[pos]
                if i not in seen:
                    seen.add(i)
                    found.append(i)
                    if len(found) >= limit:
                        break
        return [self.entries[i] for i in found]
