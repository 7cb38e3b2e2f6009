"""The diagnosis check of a multi-target model: does the lowest dimension name the fault?

Held-out demo files are degraded by one factor alone (`jsqa_tf.data.demo.degrade(only=...)`):
noise only, band limitation only, erasures only, or a level far too low or too high. Each
factor has its dimension (noise -> noi, band -> col, erasure -> dis, level -> loud); a model
that learned the dimensions from the demo's mixed degradations should give that dimension the
lowest predicted score of the four. `diagnose` scores such files and returns the confusion
table: for each factor, how many of its files had each dimension lowest.

The utterances are fresh synthetic speakers (`synth_speech` from their own seed), so no file
was seen in training. Like every demo figure, the table says whether the code paths learn
what the formula labels encode, not how a model judges real speech.
"""

from __future__ import annotations

import numpy as np

from jsqa_tf.ranges import DIMENSIONS, model_targets

FACTOR_DIMENSION = {"noise": "noi", "band": "col", "erasure": "dis", "level": "loud"}
"""The dimension each single degradation of the demo lowers (its formula: `jsqa_tf.data.demo`)."""


def held_out_files(files_per_factor: int = 10, seed: int = 1000) -> list[tuple[str, np.ndarray]]:
    """(factor, 16 kHz waveform) for `files_per_factor` fresh utterances per factor, each
    degraded by that factor alone; utterances from speakers of their own (seeded by `seed`)."""
    from jsqa_tf.data.demo import degrade, synth_speech

    rng = np.random.default_rng(seed)
    files = []
    for factor in FACTOR_DIMENSION:
        for _ in range(files_per_factor):
            speech = synth_speech(
                rng,
                rng.uniform(3.0, 6.0),
                f0_hz=rng.uniform(95, 240),
                formant_scale=rng.uniform(0.95, 1.2),
                syllables_per_second=rng.uniform(3.3, 4.7),
            )
            level = 10 ** (rng.uniform(-28, -20) / 20) / (np.sqrt(np.mean(speech**2)) + 1e-12)
            signal, _, _, _ = degrade(rng, speech * level, only=factor)
            files.append((factor, signal.astype(np.float32)))
    return files


def confusion(factors, lowest) -> dict:
    """{"table": {factor: {dimension: count}}, "diagonal": share of files whose lowest
    dimension is their factor's, "per_factor": that share per factor, "num_files"}."""
    table = {factor: dict.fromkeys(DIMENSIONS, 0) for factor in FACTOR_DIMENSION}
    for factor, dimension in zip(factors, lowest, strict=True):
        table[factor][dimension] += 1
    per_factor = {
        factor: row[FACTOR_DIMENSION[factor]] / max(1, sum(row.values())) for factor, row in table.items()
    }
    hits = sum(row[FACTOR_DIMENSION[factor]] for factor, row in table.items())
    return {
        "table": table,
        "diagonal": hits / max(1, len(factors)),
        "per_factor": per_factor,
        "num_files": len(factors),
    }


def diagnose(model, files_per_factor: int = 10, seed: int = 1000, window_seconds: float = 10.0) -> dict:
    """Scores `held_out_files` with a multi-target `MOSRegressor` (its targets must hold
    noi, col, dis and loud) and returns `confusion` of the lowest of the four per file, with
    each file's factor and scores under "files"."""
    from jsqa_tf.evaluation import model_scores

    targets = model_targets(model)
    missing = [dimension for dimension in DIMENSIONS if dimension not in targets]
    if missing:
        raise ValueError(
            f"the model does not predict {', '.join(missing)} (its targets: {', '.join(targets)})"
        )
    files = held_out_files(files_per_factor, seed)
    pieces = ((index, audio) for index, (_, audio) in enumerate(files))
    scores = [score.mos for score in model_scores(model, pieces, window_seconds=window_seconds, batch_size=8)]
    columns = [targets.index(dimension) for dimension in DIMENSIONS]
    lowest = [DIMENSIONS[int(np.argmin([values[c] for c in columns]))] for values in scores]
    report = confusion([factor for factor, _ in files], lowest)
    report["files"] = [
        {"factor": factor, **{t: round(float(v), 4) for t, v in zip(targets, values, strict=True)}}
        for (factor, _), values in zip(files, scores, strict=True)
    ]
    return report


def confusion_markdown(report: dict) -> str:
    """The confusion table as Markdown: a row per factor, a column per lowest dimension."""
    lines = ["| factor alone | " + " | ".join(f"lowest {d}" for d in DIMENSIONS) + " | right |"]
    lines.append("|:---|" + "---:|" * (len(DIMENSIONS) + 1))
    for factor, row in report["table"].items():
        cells = [str(row[d]) for d in DIMENSIONS]
        lines.append(f"| {factor} | " + " | ".join(cells) + f" | {report['per_factor'][factor]:.0%} |")
    return "\n".join(lines) + "\n"
