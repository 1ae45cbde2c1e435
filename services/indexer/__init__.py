"""Indexer job: embed items, build FAISS + lexical snapshots, publish them to the snapshot store."""
