"""Helpers of the search tests: an HCM with its search index attached, documents, searches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from arka_git_hcm.search import SearchService, attach_search
from arka_git_hcm.services.store import HcmStore

from .conftest import (
    ADMIN,
    READER,
    create_mission,
    envelope,
    journal,
    new_hcm,
    ok,
    open_store,
    quiet_settings,
)

__all__ = [
    "ADMIN",
    "READER",
    "create_mission",
    "journal",
    "paths",
    "put_doc",
    "search",
    "search_error",
    "searching",
]


@contextmanager
def searching(client: Path, **options: Any) -> Iterator[tuple[HcmStore, SearchService]]:
    """A new HCM (or the one at ``client``) with its search index. The follower is woken by the
    store's writes but never runs on a timer, so tests wait on events, not on time."""
    settings = quiet_settings(client) if (client / "hcm").exists() else new_hcm(client)
    store = open_store(settings)
    options = {"interval_s": None, "min_gap_s": 0.0, "wait_s": 30.0, **options}
    service = attach_search(store, **options)
    try:
        yield store, service
    finally:
        store.close()


def put_doc(store: HcmStore, path: str, content: Any) -> dict[str, Any]:
    return ok(store, "HCM_PUT_DOCUMENT", {"path": path, "content": content}, ADMIN)


def search(
    store: HcmStore, query: str, caller: dict[str, Any] | None = None, **payload: Any
) -> dict[str, Any]:
    """HCM_SEARCH, consistent by default (the index has caught up with the caller's tip)."""
    payload = {"query": query, "consistent": True, **payload}
    response = ok(store, "HCM_SEARCH", payload, caller or READER)
    assert response["revision"] == response["data"]["revision"]
    data: dict[str, Any] = response["data"]
    return data


def search_error(
    store: HcmStore, payload: dict[str, Any], caller: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = store.execute(envelope("HCM_SEARCH", payload, caller or READER))
    assert response["status"] == "error", response
    error: dict[str, Any] = response["error"]
    return error


def paths(data: dict[str, Any]) -> list[str]:
    return [hit["path"] for hit in data["results"]]
