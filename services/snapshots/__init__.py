"""Search snapshots: the file format, the versioned store, and the build from items.

Shared by the retrieval service (which loads, hot-swaps and, with no snapshot
yet, builds one at start) and the indexer job (which builds, updates, verifies
and rolls back). Neither of those packages imports the other's internals.
"""
