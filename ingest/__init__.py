"""Ingestion: files -> question sections -> chunks -> Chroma + BM25. Entry point: `python -m ingest`."""
