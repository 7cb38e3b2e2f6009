"""Reading a prepared folder's manifest (`jsqa_tf.data.prepare` writes it).

The manifest (`manifest.json`, written last) lists the splits, their shards with sizes and
SHA-256s, the sample rate and the config; `plan.json` (written first) marks a preparation that
has started. Readers (`jsqa_tf.data.pipeline`, `noise_bank`, `integrity`) open a folder here.
"""

from __future__ import annotations

import json
import os

from jsqa_tf.errors import CorpusError

FORMAT_VERSION = 2
"""Version of the shard format (`jsqa_tf.data.tfrecords`) and manifest layout that `prepare`
writes (2 added the dimension scores noi, col, dis, loud)."""
READABLE_VERSIONS = (1, 2)
"""Formats read: a format-1 folder's shards lack the dimension scores, read as NaN."""

MANIFEST_NAME = "manifest.json"
PLAN_NAME = "plan.json"


def load_manifest(data_dir: str | os.PathLike) -> dict:
    """Reads a prepared folder's manifest; a clear error when it is missing or incomplete."""
    data_dir = os.path.abspath(os.fspath(data_dir))
    path = os.path.join(data_dir, MANIFEST_NAME)
    if not os.path.exists(path):
        if os.path.exists(os.path.join(data_dir, PLAN_NAME)):
            raise CorpusError(data_dir, "preparation is unfinished (no manifest.json): rerun prepare")
        raise CorpusError(data_dir, "no manifest.json: not a folder written by `jsqa-tf prepare`")
    try:
        with open(path, encoding="utf-8") as stream:
            manifest = json.load(stream)
    except json.JSONDecodeError as error:
        raise CorpusError(path, f"corrupt manifest ({error})")
    if not isinstance(manifest, dict) or manifest.get("format_version") not in READABLE_VERSIONS:
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise CorpusError(
            path,
            f"shard format {found}, this jsqa-tf reads formats "
            f"{', '.join(map(str, READABLE_VERSIONS))}: prepare the corpus again",
        )
    return manifest
