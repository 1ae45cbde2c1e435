"""Retrieval service: hybrid (vector + BM25 + exact + intent) search over FAISS snapshots."""
