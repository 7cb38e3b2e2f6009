"""The back end of `jsqa-tf compare`: evaluations side by side, and paired differences to a baseline.

An evaluation folder holds:
    metrics.json      `metrics.evaluate_predictions(...)` plus "model" (the model's path) and
                      "data" (what it was evaluated on)
    predictions.csv   header `file,condition,mos,predicted`, one row per file (condition may be
                      empty); a multi-target model's adds `<target>,predicted_<target>` pairs
                      (read for nothing but their shape: the paired comparison is the MOS's)
A `jsqa-tf train` run folder keeps its evaluation in `evaluate/`. `load_result` takes any of
these (or the metrics.json itself); `compare` puts the results in one table, using each
evaluation's own figures and intervals, and adds for every result but the baseline a paired
bootstrap of its difference to the baseline on the files both scored (`metrics.paired_bootstrap`);
`to_markdown` lays the table out like Tables 1-2 of the JSQA paper. Evaluations of multi-target
models (metrics.json "targets") add a table per target (noi, col, dis, loud, ...) of each
evaluation's own figures.

NumPy, csv and json only: no TensorFlow.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os

import numpy as np

from jsqa_tf import metrics
from jsqa_tf.errors import CorpusError

METRICS_JSON = "metrics.json"
PREDICTIONS_CSV = "predictions.csv"
PREDICTIONS_HEADER = ("file", "condition", "mos", "predicted")
EVALUATION_DIR = "evaluate"  # where a training run keeps its evaluation
GENERIC_FOLDER_NAMES = frozenset({"evaluate", "evaluation", "eval"})  # never a result's name
TABLE_METRICS = ("pcc", "srcc", "rmse", "mae")
CONDITION_TABLE_METRICS = ("pcc", "rmse_mapped_1")
MOS_TOLERANCE = 1e-6  # shared files whose MOS labels differ by more were rated differently
_LABELS = {
    "pcc": "PCC",
    "srcc": "SRCC",
    "rmse": "RMSE",
    "mae": "MAE",
    "rmse_mapped_1": "RMSE (1st-order map)",
}


@dataclasses.dataclass(frozen=True)
class Result:
    """One evaluation.

    Args:
        name: how tables call it (by default the name of its folder).
        metrics: the content of its metrics.json.
        predictions: file -> (condition, mos, predicted) from its predictions.csv, or None
            without one (no paired comparison is then possible).
        path: the metrics.json it was read from.
    """

    name: str
    metrics: dict
    predictions: dict[str, tuple[str, float, float]] | None
    path: str = ""

    @property
    def predictions_path(self) -> str:
        return os.path.join(os.path.dirname(self.path), PREDICTIONS_CSV)


# --- reading -------------------------------------------------------------------------------


def _find_metrics(path: str) -> str:
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        for candidate in (
            os.path.join(path, METRICS_JSON),
            os.path.join(path, EVALUATION_DIR, METRICS_JSON),
        ):
            if os.path.isfile(candidate):
                return candidate
        raise CorpusError(path, f"not an evaluation: no {METRICS_JSON} in it nor in {EVALUATION_DIR}{os.sep}")
    raise CorpusError(path, "missing: no such file or folder")


def _default_name(metrics_path: str) -> str:
    folder = os.path.dirname(os.path.abspath(metrics_path))
    while os.path.basename(folder).lower() in GENERIC_FOLDER_NAMES and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return os.path.basename(folder) or folder


def _read_metrics(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except OSError as error:
        raise CorpusError(path, f"cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise CorpusError(path, "not JSON: not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise CorpusError(
            path, f"not JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    if not isinstance(data, dict):
        raise CorpusError(path, f"expected a JSON object of metrics, got {type(data).__name__}")
    missing = [key for key in ("num_files", "per_file") if key not in data]
    if missing:
        raise CorpusError(
            path, f"missing key(s) {', '.join(map(repr, missing))}; not written by an evaluation?"
        )
    per_file = data["per_file"]
    if not isinstance(per_file, dict):
        raise CorpusError(path, "'per_file' is not an object")
    for name in TABLE_METRICS:
        if not isinstance(per_file.get(name), dict) or "value" not in per_file[name]:
            raise CorpusError(path, f"missing key 'per_file.{name}.value'")
    return data


def _number(text: str, column: str, row: int, line: int, path: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise CorpusError(path, f"row {row} (line {line}): {column} {text!r} is not a number")
    return value


def _read_predictions(path: str) -> dict[str, tuple[str, float, float]] | None:
    if not os.path.exists(path):
        return None
    expected = ",".join(PREDICTIONS_HEADER)
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            reader = csv.reader(stream)
            header = next(reader, None)
            if header is None:
                raise CorpusError(path, f"empty; expected the header {expected!r}")
            header = [column.strip() for column in header]
            extra = header[len(PREDICTIONS_HEADER) :]
            targets_ok = len(extra) % 2 == 0 and all(
                predicted == f"predicted_{target}"
                for target, predicted in zip(extra[::2], extra[1::2], strict=True)
            )
            if header[: len(PREDICTIONS_HEADER)] != list(PREDICTIONS_HEADER) or not targets_ok:
                raise CorpusError(path, f"header is {','.join(header)!r}; expected {expected!r}")
            predictions: dict[str, tuple[str, float, float]] = {}
            row_number = 0
            for fields in reader:
                if not fields or all(not field.strip() for field in fields):
                    continue
                row_number += 1
                line = reader.line_num
                if len(fields) != len(header):
                    raise CorpusError(
                        path, f"row {row_number} (line {line}): {len(fields)} columns; expected {expected!r}"
                    )
                file, condition = fields[0].strip(), fields[1].strip()
                if not file:
                    raise CorpusError(path, f"row {row_number} (line {line}): no file name")
                if file in predictions:
                    raise CorpusError(path, f"row {row_number} (line {line}): file {file!r} is listed twice")
                mos = _number(fields[2].strip(), "mos", row_number, line, path)
                predicted = _number(fields[3].strip(), "predicted", row_number, line, path)
                predictions[file] = (condition, mos, predicted)
    except OSError as error:
        raise CorpusError(path, f"cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise CorpusError(path, "not UTF-8 text") from None
    except csv.Error as error:
        raise CorpusError(path, f"not CSV: {error}") from None
    if not predictions:
        raise CorpusError(path, "no rows below the header")
    return predictions


def load_result(path: str | os.PathLike, name: str | None = None) -> Result:
    """Reads one evaluation.

    Args:
        path: a metrics.json; a folder holding one; or a run folder whose evaluation is in
            `evaluate/metrics.json`. predictions.csv, if any, is read from beside metrics.json.
        name: the name in tables; by default the folder's name, skipping generic ones such as
            "evaluate" (`runs/scratch/evaluate/metrics.json` -> "scratch").

    Raises:
        CorpusError: naming the file and what is wrong (missing, not JSON, missing keys, a
            predictions.csv with another header or a value that is not a number, by row).
    """
    metrics_path = _find_metrics(os.fspath(path))
    data = _read_metrics(metrics_path)
    predictions = _read_predictions(os.path.join(os.path.dirname(metrics_path), PREDICTIONS_CSV))
    return Result(
        name=name or _default_name(metrics_path),
        metrics=data,
        predictions=predictions,
        path=metrics_path,
    )


# --- comparing -----------------------------------------------------------------------------


def _unique_names(results: list[Result]) -> list[str]:
    names, seen = [], {}
    for result in results:
        seen[result.name] = seen.get(result.name, 0) + 1
        names.append(result.name if seen[result.name] == 1 else f"{result.name} ({seen[result.name]})")
    return names


def _row(result: Result, name: str) -> dict:
    data = result.metrics
    per_condition = data.get("per_condition")
    if isinstance(per_condition, dict) and all(
        isinstance(per_condition.get(key), dict) for key in CONDITION_TABLE_METRICS
    ):
        per_condition = {key: per_condition[key] for key in CONDITION_TABLE_METRICS}
    else:
        per_condition = None
    return {
        "name": name,
        "path": result.path,
        "model": data.get("model"),
        "data": data.get("data"),
        "num_files": data.get("num_files"),
        "num_conditions": data.get("num_conditions"),
        "per_file": {key: data["per_file"][key] for key in TABLE_METRICS},
        "per_condition": per_condition,
        "targets": {
            target: {key: figures["per_file"][key] for key in TABLE_METRICS} if figures else None
            for target, figures in (data.get("targets") or {}).items()
        },
    }


def _paired_inputs(base: Result, other: Result, base_name: str):
    """MOS, the two predictions and the conditions (or None) of the files both scored."""
    shared = sorted(set(base.predictions) & set(other.predictions))
    where = f"the baseline {base_name!r} ({base.predictions_path})"
    if len(shared) < 2:
        found = "no file" if not shared else f"only 1 file ({shared[0]})"
        raise CorpusError(other.predictions_path, f"shares {found} with {where}; nothing to compare")
    condition_a, mos_a, pred_a = zip(*(base.predictions[file] for file in shared), strict=True)
    condition_b, mos_b, pred_b = zip(*(other.predictions[file] for file in shared), strict=True)
    mos_a, mos_b = np.array(mos_a), np.array(mos_b)
    disagree = np.flatnonzero(np.abs(mos_a - mos_b) > MOS_TOLERANCE)
    if disagree.size:
        first = disagree[0]
        raise CorpusError(
            other.predictions_path,
            f"the MOS of {disagree.size} shared file(s) differs from {where}, e.g. {shared[first]}: "
            f"{mos_b[first]:g} here, {mos_a[first]:g} there; were they evaluated on the same data?",
        )
    complete_a, complete_b = all(condition_a), all(condition_b)
    if complete_a and complete_b and condition_a != condition_b:
        first = next(i for i, (a, b) in enumerate(zip(condition_a, condition_b, strict=True)) if a != b)
        raise CorpusError(
            other.predictions_path,
            f"file {shared[first]} has condition {condition_b[first]!r} here, "
            f"{condition_a[first]!r} in {where}",
        )
    conditions = list(condition_a) if complete_a else list(condition_b) if complete_b else None
    return mos_a, np.array(pred_a), np.array(pred_b), conditions


def compare(results: list[Result], *, baseline: int = 0, num_bootstrap: int = 1000, seed: int = 0) -> dict:
    """One table of several evaluations, with paired differences to a baseline.

    Args:
        results: from `load_result`.
        baseline: index in `results` of the result the others are compared with.
        num_bootstrap: resamples of the paired bootstrap (0: no intervals).
        seed: its seed.

    Returns:
        JSON-ready data:
        {"baseline": its name, "bootstrap": {"num_resamples", "seed", "ci"},
         "results": [{"name", "path", "model", "data", "num_files", "num_conditions",
                      "per_file": {pcc, srcc, rmse, mae: {"value", "ci95"}} (the evaluation's
                      own figures), "per_condition": {pcc, rmse_mapped_1: ...} or None,
                      "targets": {target: the per-file figures, or None} ({} for a MOS model)}],
         "differences": [{"name", "baseline", "num_shared_files", "num_conditions",
                          "per_file": {metric: {"difference", "ci95", "p_b_better"}},
                          "per_condition": ... or None, "note": None or why there is none}]}
        with one difference per result but the baseline, in order; "per_file" is None when a
        predictions.csv is missing (the note says which).

    Raises:
        CorpusError: two results share no files, or a shared file has two MOS labels.
    """
    results = list(results)
    if not results:
        raise ValueError("compare: no results given")
    if not 0 <= baseline < len(results):
        raise ValueError(f"baseline must index one of the {len(results)} results, got {baseline}")
    names = _unique_names(results)
    base, base_name = results[baseline], names[baseline]
    differences = []
    for index, (result, name) in enumerate(zip(results, names, strict=True)):
        if index == baseline:
            continue
        entry = {
            "name": name,
            "baseline": base_name,
            "num_shared_files": None,
            "num_conditions": None,
            "per_file": None,
            "per_condition": None,
            "note": None,
        }
        lacking = [r for r in (base, result) if r.predictions is None]
        if lacking:
            entry["note"] = "no " + " nor ".join(r.predictions_path for r in lacking)
        else:
            mos, pred_base, pred_other, conditions = _paired_inputs(base, result, base_name)
            paired = metrics.paired_bootstrap(
                mos, pred_base, pred_other, conditions, num_bootstrap=num_bootstrap, seed=seed
            )
            entry.update(
                num_shared_files=paired["num_files"],
                num_conditions=paired["num_conditions"],
                per_file=paired["per_file"],
                per_condition=paired["per_condition"],
            )
        differences.append(entry)
    return {
        "baseline": base_name,
        "bootstrap": {"num_resamples": int(num_bootstrap), "seed": seed, "ci": 0.95},
        "results": [_row(result, name) for result, name in zip(results, names, strict=True)],
        "differences": differences,
    }


# --- Markdown ------------------------------------------------------------------------------


def _interval(entry: dict) -> tuple[str, list | None]:
    """(level label such as "95%", [lo, hi] or None) of a metric entry."""
    for key, value in entry.items():
        if key.startswith("ci"):
            return f"{key[2:]}%", value
    return "", None


def _cell(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    _, bounds = _interval(entry)
    text = f"{entry['value']:.3f}"
    if bounds and None not in bounds:
        text += f" [{bounds[0]:.2f}, {bounds[1]:.2f}]"
    return text


def _difference_cell(entry: dict | None) -> str:
    if not entry or entry.get("difference") is None:
        return "n/a"
    _, bounds = _interval(entry)
    text = f"{entry['difference']:+.3f}"
    if bounds and None not in bounds:
        text += f" [{bounds[0]:+.3f}, {bounds[1]:+.3f}]"
    if entry.get("p_b_better") is not None:
        text += f", P={entry['p_b_better']:.2f}"
    return text


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _target_tables(results: list[dict]) -> list[str]:
    """A per-file table for each target of the multi-target results (in the first one's order)."""
    targets = []
    for row in results:
        targets += [target for target in row.get("targets") or {} if target not in targets]
    lines = []
    for target in targets:
        rows = [
            [_escape(row["name"])]
            + [_cell((row["targets"].get(target) or {}).get(key)) for key in TABLE_METRICS]
            for row in results
            if target in (row.get("targets") or {})
        ]
        lines += ["", f"Target {target}, per file (the files rated on it):", ""]
        lines += _table(["Model"] + [_LABELS[key] for key in TABLE_METRICS], rows)
    return lines


def to_markdown(table: dict) -> str:
    """The output of `compare` as Markdown: a table like Tables 1-2 of the JSQA paper (Model |
    PCC | SRCC | RMSE | MAE, each `value [low, high]`; per-condition PCC and RMSE after the
    first-order mapping when every result has them), then the differences to the baseline
    (paired bootstrap, with P(better)), then where each result came from.

    Args:
        table: the dictionary returned by `compare`.
    """
    results = table["results"]
    by_condition = all(row["per_condition"] for row in results)
    level = next(
        (label for row in results for entry in row["per_file"].values() if (label := _interval(entry)[0])),
        "95%",
    )
    header = ["Model"] + [_LABELS[key] for key in TABLE_METRICS]
    if by_condition:
        header += [f"{_LABELS[key]}, per condition" for key in CONDITION_TABLE_METRICS]
    rows = []
    for row in results:
        cells = [_escape(row["name"])] + [_cell(row["per_file"][key]) for key in TABLE_METRICS]
        if by_condition:
            cells += [_cell(row["per_condition"][key]) for key in CONDITION_TABLE_METRICS]
        rows.append(cells)
    lines = [f"Per file: value [{level} bootstrap CI] from each evaluation."]
    if by_condition:
        lines[0] += " Per condition: condition means; RMSE after the first-order mapping (ITU-T P.1401)."
    lines += [""] + _table(header, rows)
    lines += _target_tables(results)

    differences = table["differences"]
    if differences:
        bootstrap = table["bootstrap"]
        diff_by_condition = all(entry["per_condition"] for entry in differences)
        header = ["Model", "Shared files"] + [f"Δ{_LABELS[key]}" for key in TABLE_METRICS]
        if diff_by_condition:
            header += [f"Δ{_LABELS[key]}, per condition" for key in CONDITION_TABLE_METRICS]
        rows = []
        for entry in differences:
            per_file = entry["per_file"] or {}
            shared = entry["num_shared_files"]
            cells = [_escape(entry["name"]), "n/a" if shared is None else str(shared)]
            cells += [_difference_cell(per_file.get(key)) for key in TABLE_METRICS]
            if diff_by_condition:
                cells += [_difference_cell(entry["per_condition"][key]) for key in CONDITION_TABLE_METRICS]
            rows.append(cells)
        lines += [
            "",
            f"Difference to the baseline {_escape(table['baseline'])} on the files both scored: "
            f"model - baseline [{100 * bootstrap['ci']:g}% CI, paired bootstrap, "
            f"{bootstrap['num_resamples']} resamples, seed {bootstrap['seed']}], "
            "P = share of resamples in which the model is better (higher PCC/SRCC, lower RMSE/MAE).",
            "",
        ]
        lines += _table(header, rows)
        notes = [f"- {_escape(entry['name'])}: {entry['note']}" for entry in differences if entry["note"]]
        if notes:
            lines += ["", "No paired comparison:"] + notes

    lines += ["", "Sources:"]
    for row in results:
        details = [
            f"model {row['model']}" if row.get("model") else None,
            f"data {row['data']}" if row.get("data") else None,
        ]
        details = [detail for detail in details if detail] + [row["path"]]
        lines.append(f"- {_escape(row['name'])}: " + "; ".join(_escape(detail) for detail in details))
    return "\n".join(lines) + "\n"
