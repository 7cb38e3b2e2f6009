"""What a model learned from: the record every run folder, `.keras` file and export carries.

A training stage builds its record when it saves its models (`stage_record`) from the prepared folders
it reads (their `manifest.json` names the corpus and where it came from) and the records of
the models it starts from (the pretrained encoder, the teacher). The run folder holds it as
`provenance.json`; every `.keras` file the stage saves holds it as a member of its zip
(`jsqa_tf_provenance.json`, which Keras ignores); `jsqa-tf export` copies it into the contract
JSON of the SavedModel and of each `.tflite` file (key `provenance`). The record:

    {"jsqa_tf_version": "0.1.0",
     "synthetic_demo": true,    # some stage learned from the synthetic demo corpus
     "corpora": ["mos: the synthetic demo corpus (NISQA-shaped, formula labels), ...", ...],
     "stages": [                # the earliest first: pretraining, fine-tuning, distillation
        {"stage": "pretrain", "finished": "2026-12-06T10:11:12+00:00", "jsqa_tf_version": "0.1.0",
         "run_dir": "/abs/runs/demo/pretrain",
         "data": {"clean": {"corpus": "librispeech", "source": "...", "shards": "...",
                            "synthetic_demo": true, "hours": 0.07}, "noise": {...}}},
        ...]}

Nothing here imports TensorFlow or Keras: `jsqa_lite` reads the contracts' copies, and
`jsqa_lite.contract.warn_if_demo` logs the one warning line that `predict`, `evaluate` and
`LiteModel` print for a model that learned from the demo corpus.
"""

from __future__ import annotations

import datetime
import json
import os
import zipfile

import jsqa_tf
from jsqa_lite.contract import PROVENANCE_KEY
from jsqa_tf import atomic
from jsqa_tf.data.demo import MARKER_NAME

RUN_FILE = "provenance.json"
"""The record in a run folder."""
KERAS_MEMBER = "jsqa_tf_provenance.json"
"""The record inside a `.keras` file (a zip; Keras reads only its own members)."""

_SHAPES = {
    "librispeech": "LibriSpeech-shaped speech",
    "chime3": "CHiME-3-shaped noise",
    "nisqa": "NISQA-shaped",
}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def is_demo_source(source: str | os.PathLike | None) -> bool:
    """True when `source` (a corpus folder or file) lies inside a demo corpus tree: the demo's
    marker file sits in it or in one of the folders above it."""
    if not source:
        return False
    folder = os.path.abspath(os.fspath(source))
    if not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    for _ in range(8):  # the deepest demo source is 6 levels below its root (CHiME-3's)
        if os.path.isfile(os.path.join(folder, MARKER_NAME)):
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent
    return False


def corpus_record(shards_dir: str | os.PathLike) -> dict:
    """What a prepared folder holds, from its manifest: the corpus kind, its source, whether
    it is the synthetic demo corpus, and its hours of audio."""
    from jsqa_tf.data.manifest import load_manifest

    shards_dir = os.path.abspath(os.fspath(shards_dir))
    manifest = load_manifest(shards_dir)
    source = (manifest.get("config") or {}).get("source") or manifest.get("root")
    demo = manifest.get("synthetic_demo")
    return {
        "corpus": manifest.get("corpus"),
        "source": source,
        "shards": shards_dir,
        "synthetic_demo": bool(is_demo_source(source) if demo is None else demo),
        "hours": round(float(manifest.get("total_seconds", 0.0)) / 3600, 3),
    }


def _corpus_line(role: str, record: dict) -> str:
    kind = record.get("corpus") or "unknown"
    if record.get("synthetic_demo"):
        labels = ", formula labels" if kind in ("nisqa", "csv") else ""
        return f"{role}: the synthetic demo corpus ({_SHAPES.get(kind, kind)}{labels}), {record['shards']}"
    return f"{role}: {kind}, {record.get('source')}"


def stage_record(stage: str, run_dir: str, data: dict[str, str], inputs: list[dict | None] = ()) -> dict:
    """The record of a stage that reads the prepared folders `data` ({role: folder}) and
    starts from models whose records are `inputs` (None: unknown, e.g. a model saved before
    jsqa-tf kept records; "scratch" encoders are simply not listed)."""
    stages, corpora = [], []
    for record in inputs:
        if record:
            stages += [entry for entry in record.get("stages", []) if entry not in stages]
            corpora += [line for line in record.get("corpora", []) if line not in corpora]
    folders = {role: corpus_record(folder) for role, folder in data.items()}
    corpora += [
        line for role, record in folders.items() if (line := _corpus_line(role, record)) not in corpora
    ]
    stages.append(
        {
            "stage": stage,
            "finished": _now(),
            "jsqa_tf_version": jsqa_tf.__version__,
            "run_dir": os.path.abspath(run_dir),
            "data": folders,
        }
    )
    unknown = any(record is None for record in inputs)
    return {
        "jsqa_tf_version": jsqa_tf.__version__,
        "synthetic_demo": any(
            folder.get("synthetic_demo") for entry in stages for folder in entry.get("data", {}).values()
        )
        or any(bool(record and record.get("synthetic_demo")) for record in inputs),
        "corpora": corpora,
        "stages": stages,
        **({"incomplete": "a model it starts from has no record"} if unknown else {}),
    }


def write_run_record(run_dir: str, record: dict) -> None:
    atomic.write_json(os.path.join(run_dir, RUN_FILE), record)


def embed(keras_path: str | os.PathLike, record: dict) -> None:
    """Adds `record` to a `.keras` file (before it is renamed into place)."""
    with zipfile.ZipFile(keras_path, "a") as archive:
        archive.writestr(KERAS_MEMBER, json.dumps(record, indent=2))


def read_keras(path: str | os.PathLike) -> dict | None:
    """The record inside a `.keras` file, else its run folder's `provenance.json`, else None."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if KERAS_MEMBER in archive.namelist():
                return json.loads(archive.read(KERAS_MEMBER))
    except (OSError, zipfile.BadZipFile, ValueError):
        pass
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), RUN_FILE)
    try:
        with open(beside, encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, ValueError):
        return None


def contract_entry(keras_path: str | os.PathLike | None) -> dict:
    """{"provenance": record} for an export's contract JSON ({} when unknown)."""
    record = read_keras(keras_path) if keras_path else None
    return {PROVENANCE_KEY: record} if record else {}
