"""TEMPORARY (issue 14): `Store.chunk_metadata` until the store split that adds it is merged from main.

`coach.render.sources_html` asks the store for a cited chunk's metadata instead of reading Chroma
itself. The method lands in coach/store.py on main; until this branch merges it, it is added here. Once
merged, `hasattr` makes this a no-op: delete this file and its import in web/chat.py.
"""
from __future__ import annotations

from coach.store import Store

if not hasattr(Store, "chunk_metadata"):
    def chunk_metadata(self, chunk_id: str) -> dict:
        """The chunk's metadata dict, or {} when no chunk has this id."""
        got = self.collection.get(ids=[chunk_id], include=["metadatas"])
        return got["metadatas"][0] if got["metadatas"] else {}

    Store.chunk_metadata = chunk_metadata
