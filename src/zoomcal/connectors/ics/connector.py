"""An ICS feed (an http(s) URL or a local file) as a read-only busy source.

Conditional GET (ETag / Last-Modified) skips unchanged feeds; size and item-count limits protect the
store; the URL passes the SSRF guard before every fetch (DNS may change). Every listing is complete: the
feed is split into VEVENT blocks and only blocks whose text changed since the stored copy are reparsed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from zoomcal.connectors.base import Capabilities, ChangeSet, Item, WriteResult, typed_items
from zoomcal.connectors.http import metered
from zoomcal.errors import InvalidItem, NotFound, Transient
from zoomcal.mapping.ical import marker_of, series_to_content, split_events
from zoomcal.mapping.rules import MappingRules
from zoomcal.net import Resolver, check_url, system_resolver, tls


class IcsConnector:
    name = "ics"
    capabilities = Capabilities(recurrence=True, occurrence_edits=False, incremental=False, writable=False)

    def __init__(self, source: str, rules: MappingRules, *, allow_private: bool = False,
                 transport: httpx.AsyncBaseTransport | None = None, resolve: Resolver = system_resolver,
                 max_bytes: int = 10 * 1024 * 1024, max_items: int = 50_000, timeout: float = 20.0,
                 default_tz: str | None = None, provider: str = ""):
        self.source = source
        self.rules = rules
        self.allow_private = allow_private
        self.resolve = resolve
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.default_tz = default_tz
        self.is_url = source.startswith(("http://", "https://")) or "://" in source
        self.client = httpx.AsyncClient(verify=tls(), transport=transport, timeout=timeout, follow_redirects=False,
                                        event_hooks=metered(provider)) \
            if self.is_url else None
        self.calls = 0

    async def _fetch(self, cursor: dict[str, str]) -> tuple[str | None, dict[str, str]]:
        """(text or None when unchanged, new validators)."""
        if not self.is_url:
            path = Path(self.source)
            try:
                stat = path.stat()
            except OSError as exc:
                raise NotFound(f"ICS file {self.source}: {exc.strerror}") from exc
            stamp = {"mtime": str(stat.st_mtime_ns), "size": str(stat.st_size)}
            if stamp == cursor:
                return None, cursor
            if stat.st_size > self.max_bytes:
                raise InvalidItem(f"ICS file larger than {self.max_bytes} bytes")
            return path.read_text("utf-8", errors="replace"), stamp
        check_url(self.source, self.allow_private, self.resolve)
        headers = {}
        if cursor.get("etag"):
            headers["If-None-Match"] = cursor["etag"]
        if cursor.get("last_modified"):
            headers["If-Modified-Since"] = cursor["last_modified"]
        self.calls += 1
        try:
            async with self.client.stream("GET", self.source, headers=headers) as response:
                if response.status_code == 304:
                    return None, cursor
                if response.status_code in (301, 302, 303, 307, 308):
                    # the new address may carry the feed's secret as the old one did: shown masked
                    raise InvalidItem(f"feed redirects to {masked(response.headers.get('location') or '')}; link "
                                      "the feed again with its new address")
                if response.status_code >= 500 or response.status_code == 429:
                    raise Transient(f"feed answered {response.status_code}")
                if response.status_code != 200:
                    raise NotFound(f"feed answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise InvalidItem(f"feed larger than {self.max_bytes} bytes")
                validators = {k: v for k, v in (("etag", response.headers.get("etag")),
                                                ("last_modified", response.headers.get("last-modified"))) if v}
                return body.decode(response.encoding or "utf-8", errors="replace"), validators
        except httpx.TimeoutException as exc:
            raise Transient("feed timed out") from exc
        except httpx.TransportError as exc:
            raise Transient(f"feed unreachable: {type(exc).__name__}") from exc

    async def changes(self, cursor: str | None, mirror: Mapping[str, dict[str, Any]]) -> ChangeSet:
        start_calls = self.calls
        validators = json.loads(cursor) if cursor else {}
        text, validators = await self._fetch(validators)
        if text is None:   # unchanged since the last listing
            return ChangeSet([], [], cursor, present=set(mirror), api_calls=self.calls - start_calls)
        blocks, calendar_tz = split_events(text)
        if len(blocks) > self.max_items:
            raise InvalidItem(f"feed has {len(blocks)} events, more than the limit of {self.max_items}")
        raws = [{**b, "tz": self.default_tz or calendar_tz} for b in blocks]
        present = {self.raw_id(r) for r in raws}
        changed = [r for r in raws if mirror.get(self.raw_id(r)) != r]
        return ChangeSet(changed, [], json.dumps(validators), present=present, api_calls=self.calls - start_calls)

    def raw_id(self, raw: dict[str, Any]) -> str:
        return f"{raw['uid']}|{raw['rid']}"

    def series_key(self, raw: dict[str, Any]) -> str:
        return raw["uid"]

    def planned_id(self, key: str) -> str | None:
        return None

    @typed_items
    def normalize(self, raws: list[dict[str, Any]]) -> Item | None:
        if not raws:
            return None
        if raws[0]["uid"].startswith("(no UID"):
            raise InvalidItem("VEVENT without UID")
        tz = raws[0].get("tz")
        if tz:
            try:
                from zoomcal.domain.timeutil import check_zone

                check_zone(tz)
            except InvalidItem:
                tz = None
        content = series_to_content(raws, self.rules, tz)
        if not content:
            return None   # STATUS:CANCELLED
        return Item(raws[0]["uid"], content, etag=None, marker=marker_of(raws), wants_peer=False)

    async def get(self, item_id: str) -> list[dict[str, Any]]:
        raise NotFound("an ICS feed is read as a whole")

    async def create(self, content: dict[str, Any], key: str, maybe_exists: bool = False) -> WriteResult:
        raise InvalidItem("an ICS feed is read-only")

    async def update(self, item_id: str, content: dict[str, Any], etag: str | None, key: str,
                     current: list[dict[str, Any]]) -> WriteResult:
        raise InvalidItem("an ICS feed is read-only")

    async def delete(self, item_id: str, etag: str | None) -> int:
        raise InvalidItem("an ICS feed is read-only")

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def masked(url: str) -> str:
    """What may be shown of a feed URL: scheme, host, and the file's extension (a secret may sit anywhere in the
    path or the query)."""
    parts = urlsplit(url)
    last = parts.path.rstrip("/").rsplit("/", 1)[-1]
    extension = "." + last.rsplit(".", 1)[1][:8] if "." in last else ""
    return f"{parts.scheme}://{parts.hostname or ''}/…{extension}"
