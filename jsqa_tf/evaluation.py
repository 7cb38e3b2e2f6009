"""`evaluate(model, data, out_dir)`: a MOS model scored on labelled files, with intervals.

DATA is either prepared shards (`jsqa-tf prepare nisqa|csv`; a split, optionally some
databases) or a CSV with columns `path, mos[, condition]` (paths relative to the CSV). Every
file is scored whole, files longer than `window_seconds` in windows, averaged (the same
scoring as fine-tuning's validation and `predict`). Labels on another scale than the model's
(`mos_range`, e.g. MUSHRA's 0-100) are evaluated on their scale: the model's MOS is mapped
linearly from its head's range onto it.

Output folder (written atomically, never over an earlier evaluation):
    metrics.json      PCC, SRCC, RMSE, MAE, RMSE after the first- and third-order mappings of
                      ITU-T P.1401, per file and per condition, each with a bootstrap 95%
                      interval (`jsqa_tf.metrics.evaluate_predictions`), and what was scored
    predictions.csv   file, condition, mos, predicted (what `jsqa-tf compare` pairs files on)
    scatter.png       predicted against subjective MOS, per file and per condition

A multi-target model (`model.targets`, e.g. mos, noi, col, dis, loud) is scored on each
target over the files rated on it: metrics.json adds "targets" {target: the same figures,
with its range}; predictions.csv adds `<target>, predicted_<target>` per target beside the
MOS (NaN labels: not rated); the top-level figures stay the MOS's.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
from collections.abc import Callable, Iterator

import numpy as np

from jsqa_lite.contract import DEFAULT_WINDOW_SECONDS, SAMPLE_RATE, to_samples, warn_if_demo
from jsqa_tf import atomic, provenance
from jsqa_tf.errors import AudioError, CorpusError, JSQAError
from jsqa_tf.ranges import model_targets, mos_column

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
SCATTER_FILE = "scatter.png"


def _is_shards(data: str) -> bool:
    return os.path.isdir(data) and os.path.exists(os.path.join(data, "manifest.json"))


def labelled_audio(
    data: str,
    *,
    split: str = "val",
    databases: tuple[str, ...] = (),
    problems: list | None = None,
    mos_range: tuple[float, float] = (1.0, 5.0),
) -> tuple[int, Iterator]:
    """(number of files, iterator of `jsqa_tf.data.mos.LabelledFile`) of shards or of a
    `path, mos[, condition]` CSV (its labels on the scale `mos_range`; UTF-8, a BOM allowed).

    Files of a CSV that cannot be read are appended to `problems` ("line N: reason") and
    skipped; shards hold decoded audio only.
    """
    from jsqa_tf.data.corpora import read_mos_csv
    from jsqa_tf.data.mos import LabelledFile

    data = os.path.abspath(data)
    if _is_shards(data):
        from jsqa_tf.data.mos import Selection, count_labelled, labelled_files

        selection = Selection(tuple(databases))
        return count_labelled(data, split, selection), labelled_files(data, split, selection)
    if os.path.isdir(data):
        raise CorpusError(data, "neither prepared shards (no manifest.json) nor a CSV file")
    if databases:
        raise CorpusError(data, "databases select NISQA shards; a CSV is scored whole")
    corpus = read_mos_csv(data, tuple(mos_range))
    if problems is not None:
        problems.extend({"path": p.path, "reason": p.reason} for p in corpus.problems)

    def read():
        from jsqa_tf.audio import read_audio

        for record in corpus.records:
            try:
                audio = read_audio(record.path, SAMPLE_RATE)
            except AudioError as error:
                if problems is not None:
                    problems.append({"path": error.path, "reason": error.reason})
                continue
            yield LabelledFile(record.relative_path, record.condition, "", float(record.mos), audio)

    return len(corpus.records), read()


def model_scores(model, pieces, *, window_seconds: float, batch_size: int):
    """`jsqa_lite.scoring.score_files` of (key, waveform) `pieces` with a Keras `MOSRegressor`:
    the windows of several files share padded batches (the model's dict input masks the
    padding), of `batch_size` rows and lengths rounded up to whole seconds."""
    from jsqa_lite.scoring import score_files

    def predict(waveform, num_valid_samples):
        return model.predict_on_batch({"waveform": waveform, "num_valid_samples": num_valid_samples})

    return score_files(
        pieces,
        predict,
        window_samples=to_samples(window_seconds),
        masks_padding=True,
        batch_size=batch_size,
        bucket_samples=SAMPLE_RATE,
    )


def score_labelled(
    model, files, *, window_seconds: float, batch_size: int, on_file: Callable[[], None] | None = None
) -> list[tuple]:
    """(`LabelledFile`, predicted MOS) for each file (`model_scores`), the audio dropped as
    soon as it is scored.

    Raises:
        JSQAError: the model failed on a batch, or gave a non-finite MOS.
    """
    meta = {}

    def pieces():
        for file in files:
            meta[file.key] = dataclasses.replace(file, audio=np.zeros(0, np.float32))
            yield file.key, file.audio

    results = []
    for score in model_scores(model, pieces(), window_seconds=window_seconds, batch_size=batch_size):
        if not score.ok:
            raise JSQAError(f"{score.key}: {score.error}")
        results.append((meta.pop(score.key), score.mos))
        if on_file is not None:
            on_file()
    return results


def target_columns(results, targets) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{target: (labels, predicted)} over every file of `score_labelled` results (labels NaN
    where a file is not rated on the target)."""
    targets = tuple(targets)
    predicted = np.array([np.atleast_1d(np.asarray(p, dtype=np.float64)) for _, p in results]).reshape(
        len(results), len(targets)
    )
    return {
        target: (np.array([file.score(target) for file, _ in results], dtype=np.float64), predicted[:, index])
        for index, target in enumerate(targets)
    }


def to_scale(values: np.ndarray, model_range, scale) -> np.ndarray:
    """MOS on the model's scale mapped linearly onto `scale` (the same values when they agree)."""
    (m_low, m_high), (low, high) = model_range, scale
    if (m_low, m_high) == (low, high):
        return values
    return low + (values - m_low) * (high - low) / (m_high - m_low)


def _predictions_csv(results, columns: dict | None = None) -> str:
    """file, condition, mos, predicted; and `<target>, predicted_<target>` for each target
    of `columns` ({target: (labels, predicted)}) besides the MOS."""
    extra = [target for target in (columns or {}) if target != "mos"]
    header = ["file", "condition", "mos", "predicted"]
    for target in extra:
        header += [target, f"predicted_{target}"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row, (file, predicted) in enumerate(results):
        values = [file.key, file.condition, f"{file.mos:.6g}", f"{predicted:.6f}"]
        for target in extra:
            labels, scores = columns[target]
            values += [f"{labels[row]:.6g}", f"{scores[row]:.6f}"]
        writer.writerow(values)
    return buffer.getvalue()


def evaluate(
    model_path: str,
    data: str,
    out_dir: str,
    *,
    split: str = "val",
    databases: tuple[str, ...] = (),
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    batch_size: int = 8,
    num_bootstrap: int = 1000,
    seed: int = 0,
    strict: bool = False,
    mos_range: tuple[float, float] | None = None,
    model=None,
    on_start: Callable[[int], None] | None = None,
    on_file: Callable[[], None] | None = None,
) -> dict:
    """Scores a model on labelled files and writes metrics.json, predictions.csv, scatter.png.

    Args:
        model_path: a `.keras` file or a fine-tuning / `train` run folder.
        data: prepared shards or a `path, mos[, condition]` CSV.
        out_dir: the output folder (must not hold an evaluation already).
        split, databases: of shards: which split, and only these `db`s.
        window_seconds: files longer than this are scored in windows, averaged.
        batch_size: windows per batch.
        num_bootstrap, seed: of the 95% intervals.
        strict: fail when any listed file cannot be read (default: report and skip).
        mos_range: the labels' scale (LOW, HIGH), e.g. (0, 100) for MUSHRA; default: the
            model's. The model's MOS (on its head's scale, `model.mos_range`) is mapped
            linearly onto it, and every figure is on the labels' scale.
        model: an already loaded `MOSRegressor` (model_path then only names it).
        on_start, on_file: progress callbacks (number of files; one file scored).

    Returns:
        The metrics written to metrics.json.
    """
    from jsqa_tf import metrics
    from jsqa_tf.models import find_model_file, load_mos_regressor
    from jsqa_tf.plots import mos_scatter_png

    if os.path.exists(os.path.join(out_dir, METRICS_FILE)):
        raise JSQAError(f"{out_dir}: holds an evaluation already; choose another output folder")
    model_file = find_model_file(model_path)
    model = model if model is not None else load_mos_regressor(model_file)
    record = provenance.read_keras(model_file)
    warn_if_demo(record, model_file)
    problems: list[dict] = []
    model_range = tuple(float(value) for value in model.mos_range)
    scale = model_range if mos_range is None else tuple(float(value) for value in mos_range)
    if not (all(np.isfinite(scale)) and scale[0] < scale[1]):
        raise JSQAError(f"mos_range {scale[0]:g} {scale[1]:g}: LOW must be below HIGH, both finite")
    count, files = labelled_audio(data, split=split, databases=databases, problems=problems, mos_range=scale)
    if strict and problems:
        raise CorpusError(
            problems[0]["path"], f"{problems[0]['reason']} (--strict; {len(problems)} problem(s))"
        )
    if on_start is not None:
        on_start(count)
    results = score_labelled(
        model, files, window_seconds=window_seconds, batch_size=batch_size, on_file=on_file
    )
    if strict and problems:
        raise CorpusError(
            problems[0]["path"], f"{problems[0]['reason']} (--strict; {len(problems)} problem(s))"
        )
    if len(results) < 2:
        raise CorpusError(data, f"only {len(results)} file(s) could be scored; metrics need at least 2")
    targets = model_targets(model)
    columns = target_columns(results, targets)
    conditions = [file.condition for file, _ in results]
    has_conditions = all(conditions)
    if "mos" in columns:
        labels, scores = columns["mos"]
        columns["mos"] = (labels, to_scale(scores, model_range, scale))
    # the top-level figures: the MOS's (a model without a MOS output: its first target's)
    tracked = targets[mos_column(targets)]
    mos, predicted = columns[tracked]
    rated = np.isfinite(mos)
    if rated.sum() < 2:
        raise CorpusError(
            data, f"only {int(rated.sum())} scored file(s) are rated on {tracked}; metrics need at least 2"
        )
    per_target = {  # each computed once: the tracked target's are the top-level figures
        target: _target_figures(labels, scores, conditions if has_conditions else None, num_bootstrap, seed)
        for target, (labels, scores) in columns.items()
    }
    figures = per_target[tracked]
    results = [(file, value) for (file, _), value in zip(results, predicted, strict=True)]
    mos, predicted = mos[rated], predicted[rated]
    conditions = [c for c, keep in zip(conditions, rated, strict=True) if keep]
    report = {
        "model": model_file,
        "data": os.path.abspath(data),
        "split": split if _is_shards(os.path.abspath(data)) else None,
        "databases": list(databases),
        "window_seconds": window_seconds,
        "mos_range": list(scale),
        "model_mos_range": list(model_range),
        "model_provenance": record,
        **figures,
        **({"targets": per_target} if targets != ("mos",) else {}),
        "num_problems": len(problems),
        "problems": problems,
    }
    panels = [("per file", mos, predicted)]
    if has_conditions and len(set(conditions)) < len(conditions):
        condition_mos, condition_predicted, _ = metrics.condition_means(mos, predicted, conditions)
        panels.append(("per condition", condition_mos, condition_predicted))
    png = mos_scatter_png(panels, scale, title=os.path.join(*model_file.split(os.sep)[-3:]))

    os.makedirs(out_dir, exist_ok=True)
    extra = columns if targets != ("mos",) else None
    atomic.write_text(os.path.join(out_dir, PREDICTIONS_FILE), _predictions_csv(results, extra))
    with atomic.atomic_path(os.path.join(out_dir, SCATTER_FILE)) as temp:
        with open(temp, "wb") as stream:
            stream.write(png)
    atomic.write_json(os.path.join(out_dir, METRICS_FILE), report)  # last: its presence means done
    return report


def _target_figures(labels, scores, conditions, num_bootstrap, seed) -> dict | None:
    """One target's figures over the files rated on it (None with fewer than 2)."""
    from jsqa_tf import metrics

    rated = np.isfinite(labels)
    if rated.sum() < 2:
        return None
    kept = None if conditions is None else [c for c, keep in zip(conditions, rated, strict=True) if keep]
    return metrics.evaluate_predictions(
        labels[rated], scores[rated], kept, num_bootstrap=num_bootstrap, seed=seed
    )


def summary_text(report: dict) -> str:
    """One screen: the per-file and per-condition figures with their intervals."""

    def line(level: dict, names) -> str:
        parts = []
        for name in names:
            entry = level.get(name)
            if not entry:
                continue
            value, ci = entry["value"], entry.get("ci95")
            text = "nan" if value is None else f"{value:.3f}"
            if ci:
                text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
            parts.append(f"{name.upper()} {text}")
        return ", ".join(parts)

    names = ("pcc", "srcc", "rmse", "mae", "rmse_mapped_1", "rmse_mapped_3")
    text = [f"{report['num_files']} files scored with {report['model']}"]
    text.append(f"  per file:      {line(report['per_file'], names)}")
    if report.get("per_condition"):
        text.append(f"  per condition ({report['num_conditions']}): {line(report['per_condition'], names)}")
    for target, figures in (report.get("targets") or {}).items():
        if figures is None:
            text.append(f"  {target:<5} no files rated on it")
        else:
            text.append(
                f"  {target:<5} ({figures['num_files']} files): {line(figures['per_file'], names[:4])}"
            )
    if report["num_problems"]:
        text.append(f"  {report['num_problems']} file(s) skipped, listed in metrics.json; e.g.:")
        text += [f"    {p['path']}: {p['reason']}" for p in report["problems"][:3]]
    return "\n".join(text)
