"""A local SQLite store and one experiment's artifacts as one compressed file, and back.

    python scripts/store_archive.py pack ARCHIVE.tar.gz --experiment NAME [--store DIR]
    python scripts/store_archive.py unpack ARCHIVE.tar.gz [--store DIR]

`pack` copies the store's database with SQLite's backup (a store being written is read
at one moment) and adds `mlartifacts/NAME/`: the models a report and `harness verify`
read. `unpack` writes both into DIR (the current folder by default; an existing store
there is refused) and points the runs' artifact locations at DIR, wherever the archive
was made, so `harness verify --tracking-uri sqlite:///DIR/mlflow.db` reads the models.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tarfile
import tempfile
from pathlib import Path

DB, ARTIFACTS = "mlflow.db", "mlartifacts"


def fail(message: str):
    """One line and exit code 2, as the harness ends on bad input."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def pack(archive: Path, store: Path, experiment: str) -> int:
    """Write the archive; its size in bytes."""
    artifacts = store / ARTIFACTS / experiment
    if not (store / DB).is_file():
        fail(f"no store {store / DB} to pack")
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / DB
        with sqlite3.connect(store / DB) as source, sqlite3.connect(copy) as target:
            source.backup(target)
        target.close()
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(copy, DB)
            if artifacts.is_dir():
                tar.add(artifacts, f"{ARTIFACTS}/{experiment}")
    return archive.stat().st_size


def unpack(archive: Path, store: Path) -> int:
    """Extract the archive into `store` and repoint its artifact locations; the runs moved."""
    if (store / DB).exists():
        fail(f"{store / DB} exists: unpack into a folder without a store")
    store.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(store, filter="data")
    root = (store / ARTIFACTS).resolve().as_uri()
    with sqlite3.connect(store / DB) as db:
        moved = 0
        for table, column, key in (
            ("experiments", "artifact_location", "experiment_id"),
            ("runs", "artifact_uri", "run_uuid"),
        ):
            rows = db.execute(f"SELECT {key}, {column} FROM {table}").fetchall()
            for row_key, uri in rows:
                if uri and f"/{ARTIFACTS}/" in uri:
                    new = root + "/" + uri.split(f"/{ARTIFACTS}/", 1)[1]
                    db.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (new, row_key))
                    moved += table == "runs"
    db.close()
    return moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("archive", type=Path)
    parser.add_argument("--store", type=Path, default=Path("."), help="the store's folder")
    parser.add_argument("--experiment", help="the experiment whose artifacts to pack")
    args = parser.parse_args()
    if args.action == "pack":
        if not args.experiment:
            fail("pack needs --experiment NAME")
        size = pack(args.archive, args.store, args.experiment)
        print(f"wrote {args.archive}: {size / 1e6:.1f} MB")
    else:
        if not args.archive.is_file():
            fail(f"no archive {args.archive}")
        moved = unpack(args.archive, args.store)
        print(f"unpacked {args.archive} into {args.store}: {moved} runs' artifacts repointed")


if __name__ == "__main__":
    main()
