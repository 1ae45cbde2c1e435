"""Which seed the `items` table holds: a digest of the seed files, kept in the store beside the items.

`kotoba seed load --if-changed` (what `make run` runs) compares the digest of the seed directory's files
with the stamp written by the last complete load and skips the load when they match, so a restart with
nothing changed does not re-read 22,000 items and scan the table. The stamp is a row in the `progress`
table under the reserved pk `#meta` (no learner id starts with `#`), so a fresh or wiped store has no stamp
and loads in full. The indexer copies the stamp into each snapshot's manifest (`seed_stamp`), which lets
`kotoba index build --if-changed` see that LATEST was built from the items the table holds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

META_USER = "#meta"
SEED_KEY = "seed"
CHUNK = 1 << 20


def seed_digest(seed_dir: Path) -> str:
    """sha256 over the names and bytes of the seed files (the directory's own files, not its subfolders)."""
    h = hashlib.sha256()
    for path in sorted(p for p in seed_dir.iterdir() if p.is_file()):
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def read_stamp(client, progress_table: str) -> str:
    """The digest of the seed last loaded in full; '' when none is recorded."""
    row = client.get_item(TableName=progress_table, Key={"userId": {"S": META_USER}, "itemId": {"S": SEED_KEY}},
                          ConsistentRead=True).get("Item") or {}
    return row.get("digest", {}).get("S", "")


def write_stamp(client, progress_table: str, digest: str, items: int) -> None:
    """Record which seed digest was loaded and how many items it held, so a rerun can skip."""
    client.put_item(TableName=progress_table, Item={
        "userId": {"S": META_USER}, "itemId": {"S": SEED_KEY}, "digest": {"S": digest}, "items": {"N": str(items)}})


def clear_stamp(client, progress_table: str) -> None:
    """Before a load writes: an interrupted load must not leave the previous seed's stamp behind."""
    client.delete_item(TableName=progress_table, Key={"userId": {"S": META_USER}, "itemId": {"S": SEED_KEY}})
