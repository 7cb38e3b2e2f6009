"""Corpus readers: list a corpus as it unpacks from its official archive into plain records.

Each reader returns a `Corpus`: the usable `AudioRecord`s, sorted by path, and the `Problem`s
(files listed or found that are missing, unreadable or outside the corpus root). Problems are
never dropped silently: `Corpus.summary()` counts them and names the first few, and `prepare`
writes them all into its manifest. Durations come from file headers (no decoding).

Layouts read:
- LibriSpeech: `<root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`; `root` may
  be the `LibriSpeech` folder (all subsets, or those named) or one subset folder.
- CHiME-3 backgrounds: `.../backgrounds/<id>_<ENV>.CH<k>.wav` (ENV in BUS, CAF, PED, STR), one
  file per microphone channel; channel 1 only, or every channel as a noise of its own.
- NISQA corpus: `NISQA_corpus_file.csv` at the corpus root, or a per-database
  `<DB>/<DB>_file.csv`; `filepath_deg` is relative to the corpus root in both.
- A folder of audio files (any depth), and a CSV with columns `path, mos[, condition]`.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import math
import os
import re
from collections.abc import Iterable, Sequence

from jsqa_tf.audio import AUDIO_SUFFIXES, audio_info
from jsqa_tf.errors import AudioError, CorpusError
from jsqa_tf.ranges import DIMENSIONS, MOS_RANGE, TARGETS, default_target_ranges

CHIME3_ENVIRONMENTS = ("BUS", "CAF", "PED", "STR")
CORPUS_KINDS = ("librispeech", "chime3", "nisqa", "folder", "csv")

_CHIME3_NAME = re.compile(r"^(?P<recording>.+)_(?P<env>[A-Z]{3})\.CH(?P<channel>\d+)\.wav$")
_LIBRISPEECH_NAME = re.compile(r"^(?P<speaker>\d+)-(?P<chapter>\d+)-(?P<utterance>\d+)\.flac$")


@dataclasses.dataclass(frozen=True)
class AudioRecord:
    """One usable audio file of a corpus, with what its corpus says about it.

    Args:
        path: absolute path of the file.
        relative_path: path relative to the corpus root (stored in shards, portable).
        duration_seconds: length from the header.
        sample_rate: the file's own rate, in Hz.
        num_channels: the file's channel count.
        speaker: LibriSpeech speaker id.
        chapter: LibriSpeech chapter id.
        environment: CHiME-3 environment (BUS, CAF, PED, STR).
        condition: NISQA condition (`con`) or a generic CSV's `condition`.
        database: NISQA database (`db`), e.g. NISQA_TRAIN_SIM; or LibriSpeech subset.
        mos: mean opinion score, when the corpus has one.
        noi, col, dis, loud: NISQA's dimension scores (noisiness, coloration, discontinuity,
            loudness), where the corpus rates them.
        group: the unit a train/val split keeps together (speaker, recording, condition...).
    """

    path: str
    relative_path: str
    duration_seconds: float
    sample_rate: int
    num_channels: int
    speaker: str = ""
    chapter: str = ""
    environment: str = ""
    condition: str = ""
    database: str = ""
    mos: float | None = None
    group: str = ""
    noi: float | None = None
    col: float | None = None
    dis: float | None = None
    loud: float | None = None

    def score(self, target: str) -> float | None:
        """The rating on a target (mos, noi, col, dis, loud), None where there is none."""
        return getattr(self, target)


@dataclasses.dataclass(frozen=True)
class Problem:
    """A file the corpus names or holds that cannot be used, and why."""

    path: str
    reason: str


@dataclasses.dataclass
class Corpus:
    """What a reader found: usable records and problems."""

    kind: str
    root: str
    records: list[AudioRecord]
    problems: list[Problem]

    @property
    def total_seconds(self) -> float:
        return sum(record.duration_seconds for record in self.records)

    def summary(self, max_examples: int = 5) -> str:
        """One paragraph for a log: counts, and the first problems with their reasons."""
        text = (
            f"{self.kind} corpus at {self.root}: {len(self.records)} files, {self.total_seconds / 3600:.2f} h"
        )
        if self.problems:
            text += f"; {len(self.problems)} problem file(s), e.g.:"
            for problem in self.problems[:max_examples]:
                text += f"\n  {problem.path}: {problem.reason}"
        return text


# --- helpers -------------------------------------------------------------------------------


def _require_folder(root: str) -> str:
    root = os.path.abspath(root)
    if not os.path.exists(root):
        raise CorpusError(root, "folder not found")
    if not os.path.isdir(root):
        raise CorpusError(root, "is not a folder")
    return root


def _is_inside(path: str, root: str) -> bool:
    """Whether `path` lies below `root` as written (`..` resolved, symlinks not): a CSV row
    cannot climb out of the corpus, while a corpus that reaches its files through symlinks
    (a folder of links into a shared store) is read."""
    path, root = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(root))
    return os.path.commonpath([path, root]) == root


def _walk_audio(root: str, suffixes: Sequence[str] = AUDIO_SUFFIXES) -> list[str]:
    found, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a symlink loop, or a second link to a folder already read
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders.sort()
        for name in sorted(files):
            if name.lower().endswith(tuple(suffixes)) and not name.startswith("."):
                found.append(os.path.join(folder, name))
    return found


def _probe(
    candidates: Iterable[tuple[str, dict]], root: str, num_threads: int = 8
) -> tuple[list[AudioRecord], list[Problem]]:
    """Reads the header of each (path, fields) and builds records; failures become problems."""
    candidates = list(candidates)

    def probe_one(item):
        path, fields = item
        if not _is_inside(path, root):
            return Problem(path, f"outside the corpus root {root}")
        try:
            info = audio_info(path)
        except AudioError as error:
            return Problem(path, error.reason)
        return AudioRecord(
            path=path,
            relative_path=os.path.relpath(path, root),
            duration_seconds=info.duration_seconds,
            sample_rate=info.sample_rate,
            num_channels=info.num_channels,
            **fields,
        )

    # Header reads are I/O bound and libsndfile releases the GIL: threads are enough.
    with concurrent.futures.ThreadPoolExecutor(max_workers=num_threads) as pool:
        results = list(pool.map(probe_one, candidates))
    records = sorted((r for r in results if isinstance(r, AudioRecord)), key=lambda r: r.path)
    problems = [r for r in results if isinstance(r, Problem)]
    return records, problems


# --- LibriSpeech -----------------------------------------------------------------------------


def read_librispeech(root: str | os.PathLike, subsets: Sequence[str] = ()) -> Corpus:
    """Lists LibriSpeech utterances, keeping speaker and chapter.

    Args:
        root: the `LibriSpeech` folder (holding subsets such as `train-clean-100`), or one
            subset folder (holding speaker folders).
        subsets: subset folder names to keep; empty keeps all found.
    """
    root = _require_folder(os.fspath(root))
    entries = sorted(os.listdir(root))
    is_subset_folder = any(name.isdigit() for name in entries)
    if is_subset_folder:
        subset_dirs = {os.path.basename(root): root}
        corpus_root = os.path.dirname(root)
    else:
        subset_dirs = {
            name: os.path.join(root, name)
            for name in entries
            if os.path.isdir(os.path.join(root, name)) and not name.startswith(".")
        }
        corpus_root = root
    if subsets:
        missing = sorted(set(subsets) - set(subset_dirs))
        if missing:
            raise CorpusError(root, f"no LibriSpeech subset(s) {', '.join(missing)} here")
        subset_dirs = {name: subset_dirs[name] for name in subsets}

    candidates, problems = [], []
    for subset, subset_dir in sorted(subset_dirs.items()):
        for path in _walk_audio(subset_dir, (".flac", ".wav")):
            parts = os.path.relpath(path, subset_dir).split(os.sep)
            match = _LIBRISPEECH_NAME.match(parts[-1])
            if len(parts) != 3 or not match or parts[:2] != [match["speaker"], match["chapter"]]:
                problems.append(
                    Problem(path, "not laid out as <speaker>/<chapter>/<speaker>-<chapter>-<n>.flac")
                )
                continue
            fields = dict(
                speaker=match["speaker"],
                chapter=match["chapter"],
                database=subset,
                group=match["speaker"],
            )
            candidates.append((path, fields))
    if not candidates and not problems:
        raise CorpusError(root, "no LibriSpeech .flac files found (<subset>/<speaker>/<chapter>/)")
    records, probe_problems = _probe(candidates, corpus_root)
    return Corpus("librispeech", corpus_root, records, problems + probe_problems)


# --- CHiME-3 backgrounds ---------------------------------------------------------------------


def read_chime3_backgrounds(
    root: str | os.PathLike,
    *,
    channels: str = "first",
    environments: Sequence[str] = CHIME3_ENVIRONMENTS,
) -> Corpus:
    """Lists CHiME-3 background noise recordings, keeping the environment.

    Args:
        root: the `backgrounds` folder, or any folder above it (searched recursively).
        channels: "first" keeps channel 1 of each recording; "all" keeps every channel file
            as a noise of its own.
        environments: environments to keep.
    """
    if channels not in ("first", "all"):
        raise CorpusError(str(root), f"channels must be 'first' or 'all', not {channels!r}")
    root = _require_folder(os.fspath(root))
    candidates, problems = [], []
    for path in _walk_audio(root, (".wav",)):
        match = _CHIME3_NAME.match(os.path.basename(path))
        if not match:
            problems.append(Problem(path, "name is not <id>_<ENV>.CH<k>.wav"))
            continue
        if match["env"] not in environments:
            continue
        if channels == "first" and match["channel"] != "1":
            continue
        fields = dict(
            environment=match["env"],
            condition=f"CH{match['channel']}",
            group=f"{match['recording']}_{match['env']}",
        )
        candidates.append((path, fields))
    if not candidates and not problems:
        raise CorpusError(root, "no CHiME-3 background files (<id>_<ENV>.CH<k>.wav) found")
    records, probe_problems = _probe(candidates, root)
    return Corpus("chime3", root, records, problems + probe_problems)


# --- CSV-based corpora -------------------------------------------------------------------------


def _read_csv_rows(csv_path: str, required: Sequence[str]) -> list[tuple[int, dict]]:
    """(line number, row) of every row of a CSV, fields stripped.

    Line numbers are those of the file (blank lines counted), for messages a user can follow.
    """
    if not os.path.isfile(csv_path):
        raise CorpusError(csv_path, "CSV file not found")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in required if c not in columns]
            if missing:
                raise CorpusError(
                    csv_path,
                    f"missing column(s) {', '.join(missing)}; found {', '.join(columns) or 'none'}",
                )
            rows = []
            for row in reader:
                if None in row:  # more fields than the header names
                    raise CorpusError(
                        csv_path,
                        f"line {reader.line_num}: {len(columns) + len(row[None])} fields, the "
                        f"header has {len(columns)} (a comma inside an unquoted field?)",
                    )
                rows.append((reader.line_num, {(k or "").strip(): (v or "").strip() for k, v in row.items()}))
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise CorpusError(csv_path, f"not UTF-8 text (a byte {byte:#04x}); save it as UTF-8")
    except csv.Error as error:
        raise CorpusError(csv_path, f"malformed CSV ({error})")
    if not rows:
        raise CorpusError(csv_path, "holds no rows below its header")
    return rows


def _parse_mos(text: str, csv_path: str, line_number: int, mos_range=MOS_RANGE, column: str = "mos") -> float:
    label = "MOS" if column == "mos" else column
    if not text:
        raise CorpusError(csv_path, f"line {line_number}: no {label}")
    try:
        value = float(text)
    except ValueError:
        raise CorpusError(csv_path, f"line {line_number}: {label} {text!r} is not a number")
    if not math.isfinite(value):
        raise CorpusError(csv_path, f"line {line_number}: {label} {text!r} is not finite")
    low, high = mos_range
    if not low <= value <= high:
        advice = "--mos-range LOW HIGH" if column == "mos" else f"--target-range {column} LOW HIGH"
        raise CorpusError(
            csv_path,
            f"line {line_number}: {label} {value:g} is outside the scale [{low:g}, {high:g}] "
            f"(a list on another scale: {advice})",
        )
    return value


def target_scales(targets: Sequence[str], mos_range=MOS_RANGE, target_ranges=()) -> dict[str, tuple]:
    """Each score column's scale: `target_ranges` (one [low, high] per target) where given,
    else `mos_range` for mos and NISQA's [1, 5] for noi, col, dis and loud."""
    if target_ranges and len(target_ranges) != len(targets):
        raise ValueError(f"{len(target_ranges)} ranges for {len(targets)} targets")
    if target_ranges:
        return {target: tuple(pair) for target, pair in zip(targets, target_ranges, strict=True)}
    return dict(zip(targets, default_target_ranges(targets, mos_range), strict=True))


def _parse_scores(row: dict, columns: Sequence[str], scales: dict, csv_path: str, line_number: int) -> dict:
    """The score columns of one CSV row; a column the row leaves empty (or a CSV lacks) is
    None: not rated on that target."""
    return {
        column: _parse_mos(row[column], csv_path, line_number, scales[column], column)
        if row.get(column)
        else None
        for column in columns
    }


def _with_line_numbers(problems: list[Problem], lines: dict[str, int]) -> list[Problem]:
    """Problems of a CSV-listed corpus, each reason prefixed with the CSV line naming it."""
    return [Problem(p.path, f"line {lines[p.path]}: {p.reason}") if p.path in lines else p for p in problems]


def read_nisqa(
    csv_path: str | os.PathLike, databases: Sequence[str] = (), mos_range: tuple[float, float] = MOS_RANGE
) -> Corpus:
    """Lists a NISQA corpus CSV (`NISQA_corpus_file.csv` or `<DB>/<DB>_file.csv`).

    Args:
        csv_path: the CSV. Columns used: `db`, `con`, `filepath_deg`, `mos` (others ignored).
            `filepath_deg` is relative to the corpus root: the CSV's folder for the corpus
            file, its parent for a per-database file.
        databases: keep only rows whose `db` is one of these (e.g. NISQA_TRAIN_SIM).
        mos_range: the MOS scale; a row outside it is an error naming its line.

    The dimension columns `noi`, `col`, `dis`, `loud` (scale [1, 5]) are kept where the CSV
    has them; an empty cell (or a CSV without the column) is None, not rated.
    """
    csv_path = os.path.abspath(os.fspath(csv_path))
    rows = _read_csv_rows(csv_path, ("db", "con", "filepath_deg", "mos"))
    dimension_scales = target_scales(DIMENSIONS)
    folder = os.path.dirname(csv_path)
    name = os.path.basename(csv_path)
    # A per-database CSV sits in its database folder: <root>/<DB>/<DB>_file.csv.
    per_database = name == f"{os.path.basename(folder)}_file.csv"
    root = os.path.dirname(folder) if per_database else folder

    known = sorted({row["db"] for _, row in rows})
    unknown = sorted(set(databases) - set(known))
    if unknown:
        raise CorpusError(csv_path, f"no rows for db {', '.join(unknown)}; the CSV has {', '.join(known)}")
    candidates, lines = [], {}
    for line_number, row in rows:
        if databases and row["db"] not in databases:
            continue
        if not row["filepath_deg"]:
            raise CorpusError(csv_path, f"line {line_number}: empty filepath_deg")
        fields = dict(
            database=row["db"],
            condition=row["con"],
            mos=_parse_mos(row["mos"], csv_path, line_number, mos_range),
            group=f"{row['db']}/{row['con']}",
            **_parse_scores(row, DIMENSIONS, dimension_scales, csv_path, line_number),
        )
        path = os.path.normpath(os.path.join(root, row["filepath_deg"].replace("\\", "/")))
        _check_listed_once(path, row["filepath_deg"], line_number, lines, csv_path)
        candidates.append((path, fields))
    records, problems = _probe(candidates, root)
    return Corpus("nisqa", root, records, _with_line_numbers(problems, lines))


def _check_listed_once(path: str, text: str, line_number: int, lines: dict[str, int], csv_path: str) -> None:
    if path in lines:
        raise CorpusError(
            csv_path, f"line {line_number}: {text} is listed already, on line {lines[path]} (one MOS a file)"
        )
    lines[path] = line_number


def read_mos_csv(
    csv_path: str | os.PathLike,
    mos_range: tuple[float, float] = MOS_RANGE,
    targets: Sequence[str] = ("mos",),
    target_ranges: Sequence[Sequence[float]] = (),
) -> Corpus:
    """Lists a generic MOS CSV with columns `path, mos[, condition]`.

    Paths resolve relative to the CSV's folder, which is the corpus root. A MOS outside
    `mos_range`, or a file listed twice, is an error naming the line.

    `targets` names the score columns read (default: mos alone; any of mos, noi, col, dis,
    loud), each on its scale (`target_ranges`, one [low, high] per target; default
    `mos_range` for mos, [1, 5] else). The CSV must have every column named; an empty cell
    is "not rated" (NaN in the shards, masked in training), but a row must rate at least one.
    """
    targets = tuple(targets)
    unknown = [target for target in targets if target not in TARGETS]
    if unknown or not targets:
        raise CorpusError(
            os.fspath(csv_path), f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}"
        )
    scales = target_scales(targets, mos_range, target_ranges)
    csv_path = os.path.abspath(os.fspath(csv_path))
    rows = _read_csv_rows(csv_path, ("path", *targets))
    root = os.path.dirname(csv_path)
    candidates, lines = [], {}
    for line_number, row in rows:
        if not row["path"]:
            raise CorpusError(csv_path, f"line {line_number}: empty path")
        path = os.path.normpath(os.path.join(root, row["path"]))
        _check_listed_once(path, row["path"], line_number, lines, csv_path)
        condition = row.get("condition", "")
        if targets == ("mos",):
            scores = {"mos": _parse_mos(row["mos"], csv_path, line_number, scales["mos"])}
        else:
            scores = _parse_scores(row, targets, scales, csv_path, line_number)
            if all(value is None for value in scores.values()):
                raise CorpusError(csv_path, f"line {line_number}: no score in {', '.join(targets)}")
        fields = dict(condition=condition, group=condition or os.path.relpath(path, root), **scores)
        candidates.append((path, fields))
    records, problems = _probe(candidates, root)
    return Corpus("csv", root, records, _with_line_numbers(problems, lines))


def read_audio_folder(root: str | os.PathLike) -> Corpus:
    """Lists every audio file below a folder (WAV, FLAC, OGG, AIFF, MP3), no labels."""
    root = _require_folder(os.fspath(root))
    paths = _walk_audio(root)
    if not paths:
        raise CorpusError(root, f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found")
    candidates = [(path, dict(group=os.path.relpath(path, root))) for path in paths]
    records, problems = _probe(candidates, root)
    return Corpus("folder", root, records, problems)


def read_corpus(
    kind: str,
    source: str | os.PathLike,
    *,
    subsets: Sequence[str] = (),
    databases: Sequence[str] = (),
    chime3_channels: str = "first",
    mos_range: tuple[float, float] = MOS_RANGE,
    targets: Sequence[str] = ("mos",),
    target_ranges: Sequence[Sequence[float]] = (),
) -> Corpus:
    """Dispatches to the reader for `kind` (one of `CORPUS_KINDS`); `targets` and
    `target_ranges` are the score columns of a csv corpus (`read_mos_csv`)."""
    if kind == "librispeech":
        return read_librispeech(source, subsets)
    if kind == "chime3":
        return read_chime3_backgrounds(source, channels=chime3_channels)
    if kind == "nisqa":
        return read_nisqa(source, databases, mos_range)
    if kind == "folder":
        return read_audio_folder(source)
    if kind == "csv":
        return read_mos_csv(source, mos_range, targets, target_ranges)
    raise CorpusError(os.fspath(source), f"unknown corpus kind {kind!r}; one of {CORPUS_KINDS}")
