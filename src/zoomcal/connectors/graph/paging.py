"""Graph listings page by page: each page follows the last one's `@odata.nextLink`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from zoomcal.connectors.http import ApiClient


async def pages(api: ApiClient, url: str | None, params: dict[str, Any] | None = None,
                **kwargs: Any) -> AsyncIterator[Any]:
    """Every page from `url` on. Only the first request carries `params` (the next links hold them); `kwargs` go
    with every request (headers, what an expired link is)."""
    while url:
        page = await api.json("GET", url, params=params, **kwargs)
        yield page
        url, params = (page.get("@odata.nextLink") if isinstance(page, dict) else None), None
