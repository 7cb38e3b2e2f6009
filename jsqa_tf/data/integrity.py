"""Shard integrity: what `prepare` records about each shard, and the checks that use it.

`prepare` records each shard's byte size and SHA-256 in its `.json` and in `manifest.json`.
Every reader checks the sizes when it opens a split (a stat per shard: free), which catches
the 0-byte or short files that an interrupted copy or a full disk leaves. The checksums are
checked on request (`verify_shards`, `jsqa-tf check`). A record that is corrupt inside a
shard of the right size (a flipped bit) fails TFRecord's own CRC while it is read;
`explain_read_error` turns TensorFlow's `DataLossError`, which names no file, into an error
naming the shard, by reading the shards this process opened until one fails.

Reading never spins: a split whose shards yield no examples in an epoch stops the endless
readers with an error (see `jsqa_tf.data.pipeline.make_dataset`), which `explain_read_error`
also turns into one line naming the folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys

from jsqa_tf.data.manifest import load_manifest
from jsqa_tf.errors import CorpusError

_CHUNK_BYTES = 1 << 20

EMPTY_EPOCH_TAG = "jsqa-tf-empty-epoch"
"""Tags the assertion a reader raises when an epoch of a split yields too few examples."""

opened_shards: dict[str, None] = {}
"""Shard files handed to TensorFlow readers in this process, the latest last (where to look
after a DataLossError)."""


def remember_opened(paths) -> None:
    for path in paths:
        opened_shards.pop(path, None)
        opened_shards[path] = None


def file_digest(path: str | os.PathLike) -> dict:
    """{"num_bytes": size, "sha256": hex digest} of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return {"num_bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def check_size(path: str, entry: dict) -> None:
    """Raises `CorpusError` naming the shard when its size is not what `prepare` recorded.

    `entry` is the shard's manifest entry; one from before sizes were recorded is checked
    only for being empty while it should hold records.
    """
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise CorpusError(path, "shard listed in manifest.json is missing")
    expected = entry.get("num_bytes")
    if expected is None:
        if size == 0 and entry.get("num_records", 0) > 0:
            raise CorpusError(
                path,
                f"shard is empty (0 bytes) but should hold {entry['num_records']} record(s): an "
                "interrupted copy or a full disk? Copy it again, or prepare the corpus again",
            )
        return
    if size != expected:
        raise CorpusError(
            path,
            f"shard is {size} bytes, manifest.json says {expected}: the file is truncated or "
            "was changed (an interrupted copy or a full disk?). Copy it again, or prepare the "
            "corpus again",
        )


def scan_records(path: str) -> tuple[int, str | None]:
    """Reads every record of a shard (TFRecord checks each record's CRC).

    Returns:
        (records read, None) or (records read before the failure, the reason).
    """
    import tensorflow as tf

    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path):
            count += 1
    except tf.errors.DataLossError as error:
        return count, f"corrupt after record {count} ({_first_line(error.message)})"
    except tf.errors.OpError as error:
        return count, f"unreadable after record {count} ({_first_line(error.message)})"
    return count, None


def verify_shards(data_dir: str | os.PathLike, *, checksum: bool = True, records: bool = False) -> dict:
    """Checks every shard of a prepared folder: present, its recorded size, its SHA-256
    (`checksum`), and every record readable with the recorded count (`records`; also with
    `checksum` where none was recorded, i.e. for shards of an older jsqa-tf).

    Returns:
        {"data_dir", "num_shards", "num_bytes", "problems": [{"file", "reason"}], "checked": [...]}
    """
    data_dir = os.path.abspath(os.fspath(data_dir))
    manifest = load_manifest(data_dir)
    problems, checked, total = [], set(), 0
    for split in manifest["splits"].values():
        for entry in split["shards"]:
            path = os.path.join(data_dir, entry["file"])
            try:
                check_size(path, entry)
            except CorpusError as error:
                problems.append({"file": path, "reason": error.reason})
                continue
            total += os.path.getsize(path)
            if checksum and entry.get("sha256"):
                checked.add("sha256")
                if file_digest(path)["sha256"] != entry["sha256"]:
                    problems.append({"file": path, "reason": "checksum (SHA-256) differs from manifest.json"})
                    continue
            if records or (checksum and not entry.get("sha256")):
                checked.add("records")
                count, reason = scan_records(path)
                if reason is None and count != entry["num_records"]:
                    reason = f"holds {count} record(s), manifest.json says {entry['num_records']}"
                if reason:
                    problems.append({"file": path, "reason": reason})
    return {
        "data_dir": data_dir,
        "num_shards": sum(len(split["shards"]) for split in manifest["splits"].values()),
        "num_bytes": total,
        "checked": ["size", *sorted(checked)],
        "problems": problems,
    }


def locate_corruption(paths) -> tuple[str, str] | None:
    """(shard, reason) of the first of `paths` whose records cannot all be read, or None."""
    for path in paths:
        if not os.path.exists(path):
            return path, "shard is missing"
        _, reason = scan_records(path)
        if reason:
            return path, reason
    return None


def _first_line(text: str) -> str:
    """The first line of a TensorFlow error message, without its node and op decorations."""
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text or "").strip()
    line = text.splitlines()[0] if text else ""
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", line).strip()


def explain_read_error(error: BaseException) -> CorpusError | None:
    """The `CorpusError` naming the shard or folder behind a TensorFlow read error; None when
    `error` is not one (or TensorFlow was never imported)."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.OpError):
        return None
    message = error.message or ""
    tagged = re.search(rf"{EMPTY_EPOCH_TAG}\|([^|]*)\|([^|\]]*)\|([^|\]]*)", message)
    if tagged:
        data_dir, split, needed = tagged.groups()
        return CorpusError(
            data_dir,
            f"an epoch of the {split!r} split yielded fewer than {needed} example(s) although "
            f"manifest.json lists enough: shards are empty or were replaced. Run `jsqa-tf check "
            f"{data_dir}`, then copy them again or prepare the corpus again",
        )
    if isinstance(error, tf.errors.DataLossError):
        found = locate_corruption(reversed(opened_shards))  # the latest opened first
        if found:
            path, reason = found
            return CorpusError(
                path,
                f"{reason}: the shard is damaged. Copy it again, or prepare the corpus again "
                f"(`jsqa-tf check {os.path.dirname(path)}` checks every shard)",
            )
        return CorpusError(
            "(shards)",
            f"corrupt data while reading ({_first_line(message)}); `jsqa-tf check DIR` finds the shard",
        )
    return None
