"""`jsqa-tf train`: pretraining -> fine-tuning -> evaluation (-> comparison), one run folder.

A pipeline file (pipelines/demo.yaml, paper.yaml, label_efficiency.yaml):

    run_dir: runs/paper
    pretrain:          # one pretraining config (data, model, training: as `jsqa-tf pretrain`),
      noproj: {...}    # or several by name; absent: no pretraining (scratch runs only)
    finetune: {...}    # the fine-tuning config every run starts from (as `jsqa-tf finetune`)
    evaluate: {...}    # how each run is scored (EvaluateConfig; default: the val split)
    runs:              # name -> encoder (a pretraining's name, "scratch", or a path) and
      pretrained: {encoder: noproj}                     # `set`: dotted fine-tuning overrides
      scratch: {encoder: scratch, set: {training.epochs: 100}}
    grid:              # or runs as a product: encoder x any dotted fine-tuning settings
      encoder: [noproj, scratch]
      data.train_fraction: [0.05, 1.0]
    compare: {baseline: scratch, num_bootstrap: 1000}
    distill:           # optional: a small student learns one run's model (as `jsqa-tf distill`;
      teacher: pretrained   # data, model, training sections; the teacher is a run's name,
      data: {...}           # or left out when there is one run)
    export:            # optional: the student (or the one run's model) for TF Serving/LiteRT
      name: jsqa-student
      tflite: [float16, int8]
      check: true

Folders: one run (no `runs`/`grid`) writes `pretrain/`, `finetune/`, `evaluate/` under
run_dir; several write `pretrain/<name>/` (or `pretrain/` for a single one),
`<run>/finetune/`, `<run>/evaluate/`; a student `student/distill/` and `student/evaluate/`;
with more than one model, `compare.md` + `compare.json`; an export `saved_models/<name>/`
(and `export.json`). `pipeline.yaml` holds the resolved file. Run again with the same file
(or with `resume`), finished stages are skipped and an interrupted one resumes from its last
checkpoint.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os

from jsqa_tf import atomic
from jsqa_tf.config import (
    RUN_SETTINGS,
    DistillConfig,
    EvaluateConfig,
    FinetuneConfig,
    PretrainConfig,
    apply_overrides,
    from_dict,
    load_yaml,
)
from jsqa_tf.errors import ConfigError
from jsqa_tf.training.run import TrainingError

logger = logging.getLogger(__name__)

PIPELINE_FILE = "pipeline.yaml"
TOP_KEYS = ("run_dir", "pretrain", "finetune", "evaluate", "runs", "grid", "compare", "distill", "export")
STAGE_KEYS = ("data", "model", "training")
SINGLE = "pretrain"  # the name of the one pretraining of a file that has one
STUDENT = "student"  # the distilled student's name among the runs' results
EXPORT_KEYS = ("name", "tflite", "check")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a pipeline file asks for, resolved: the configs of every stage, in order."""

    run_dir: str
    pretrain: dict[str, PretrainConfig]
    finetune: dict[str, FinetuneConfig]  # by run name
    evaluate: dict[str, tuple[EvaluateConfig, str]]  # by run name: config, output folder
    compare: dict | None  # {"baseline": name, "num_bootstrap": n, "seed": s} or None
    grid: dict[str, dict]  # by run name: its grid coordinates (empty without a grid)
    distill: DistillConfig | None = None  # the student's config (its teacher: a run's model)
    distill_teacher: str | None = None  # the teacher's run name
    export: dict | None = None  # {"name", "tflite", "check"}: exports the student, or the one run


def _section(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.{key}: expected a mapping, got {type(value).__name__}")
    return value


def _pretrainings(raw: dict, where: str) -> dict[str, tuple[str, dict]]:
    """name -> (its key in the file, its section): one pretraining (`pretrain` holds data,
    model, training; named `SINGLE`) or several by name (`pretrain.<name>`)."""
    sections = _section(raw, "pretrain", where)
    if sections and set(sections) <= set(STAGE_KEYS):
        return {SINGLE: ("pretrain", sections)}
    return {name: (f"pretrain.{name}", section) for name, section in sections.items()}


def with_run_settings(raw: dict, settings: dict, where: str = "pipeline") -> dict:
    """A pipeline mapping with `settings` (`RunSettings` fields: precision, jit_compile,
    strategy, ...) set in the `training` section of every training stage: each pretraining,
    the fine-tuning every run starts from, the distillation."""
    unknown = sorted(set(settings) - set(RUN_SETTINGS))
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: not a run setting ({', '.join(RUN_SETTINGS)})")
    stages = [key for key, _ in _pretrainings(raw, where).values()]
    stages += ["finetune", *(["distill"] if raw.get("distill") else [])]
    return apply_overrides(raw, {f"{stage}.training.{k}": v for stage in stages for k, v in settings.items()})


def _runs(raw: dict, pretrain_names: list[str], where: str) -> dict[str, dict]:
    """name -> {"encoder": ..., "set": {...}} of the `runs` or `grid` section."""
    if raw.get("runs") and raw.get("grid"):
        raise ConfigError(f"{where}: give runs or grid, not both")
    if raw.get("grid"):
        grid = _section(raw, "grid", where)
        encoders = grid.get("encoder", pretrain_names or ["scratch"])
        axes = {key: value for key, value in grid.items() if key != "encoder"}
        for key, values in {"encoder": encoders, **axes}.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}.grid.{key}: expected a non-empty list")
        runs = {}
        for encoder in encoders:
            for combination in itertools.product(*axes.values()):
                coordinates = dict(zip(axes, combination, strict=True))
                suffix = "-".join(f"{key.split('.')[-1]}{value}" for key, value in coordinates.items())
                settings = dict(coordinates)
                if "seed" in settings:  # one seed: the subset of files and the training run
                    seed = settings.pop("seed")
                    settings.update({"training.seed": seed, "data.subset_seed": seed})
                name = f"{encoder}-{suffix}" if suffix else str(encoder)
                runs[name] = {
                    "encoder": encoder,
                    "set": settings,
                    "grid": {"encoder": encoder, **coordinates},
                }
        return runs
    if raw.get("runs"):
        runs = _section(raw, "runs", where)
        for name, run in runs.items():
            if not isinstance(run, dict) or "encoder" not in run or set(run) - {"encoder", "set"}:
                raise ConfigError(f"{where}.runs.{name}: expected {{encoder: ..., set: {{...}}}}")
        return runs
    return {"": {"encoder": pretrain_names[0] if pretrain_names else "scratch", "set": {}}}


def plan(raw: dict, where: str = "pipeline") -> Plan:
    """Resolves a pipeline mapping into the configs of every stage (all checked up front)."""
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(TOP_KEYS)}")
    if not raw.get("run_dir"):
        raise ConfigError(f"{where}: run_dir is required")
    run_dir = os.path.abspath(raw["run_dir"])

    pretrainings = _pretrainings(raw, where)
    pretrain = {}
    for name, (_, section) in pretrainings.items():
        folder = (
            os.path.join(run_dir, "pretrain")
            if len(pretrainings) == 1
            else os.path.join(run_dir, "pretrain", name)
        )
        pretrain[name] = from_dict(
            PretrainConfig, {**section, "run_dir": folder}, where=f"{where}.pretrain.{name}"
        )

    finetune_raw = _section(raw, "finetune", where)
    evaluate_config = from_dict(EvaluateConfig, _section(raw, "evaluate", where), where=f"{where}.evaluate")
    runs = _runs(raw, list(pretrain), where)
    finetune, evaluate = {}, {}
    for name, run in runs.items():
        encoder = str(run["encoder"])
        if encoder in pretrain:
            encoder = pretrain[encoder].run_dir
        elif encoder != "scratch" and not os.path.exists(encoder):
            known = ", ".join([*pretrain, "scratch"])
            raise ConfigError(f"{where}.runs.{name}: encoder {encoder!r} is none of {known}, nor a path")
        folder = os.path.join(run_dir, name)
        overrides = {
            "run_dir": os.path.join(folder, "finetune"),
            "model.encoder": encoder,
            **(run.get("set") or {}),
        }
        config = from_dict(
            FinetuneConfig,
            apply_overrides(finetune_raw, overrides),
            where=f"{where}.runs.{name or 'finetune'}",
        )
        finetune[name] = config
        evaluate[name] = (evaluate_config, os.path.join(folder, "evaluate"))
    distill, teacher = _distill(raw, finetune, run_dir, where)
    if distill is not None:
        evaluate[STUDENT] = (evaluate_config, os.path.join(run_dir, STUDENT, "evaluate"))
    export = _export(raw, finetune, distill, where)
    compare = None
    if len(runs) + (distill is not None) > 1:
        compare = {"baseline": None, "num_bootstrap": evaluate_config.num_bootstrap, "seed": 0}
        compare.update(_section(raw, "compare", where))
        unknown = sorted(set(compare) - {"baseline", "num_bootstrap", "seed"})
        if unknown:
            raise ConfigError(f"{where}.compare: unknown key(s) {', '.join(unknown)}")
        if compare["baseline"] is not None and compare["baseline"] not in evaluate:
            raise ConfigError(
                f"{where}.compare.baseline: {compare['baseline']!r} is not a run ({', '.join(evaluate)})"
            )
    grid = {name: run["grid"] for name, run in runs.items() if "grid" in run}
    return Plan(run_dir, pretrain, finetune, evaluate, compare, grid, distill, teacher, export)


def _distill(raw: dict, finetune: dict, run_dir: str, where: str) -> tuple[DistillConfig | None, str | None]:
    """The student's config (its teacher resolved to a run's fine-tuning folder) and the
    teacher's run name; (None, None) without a `distill` section."""
    section = dict(_section(raw, "distill", where))
    if not section:
        return None, None
    teacher = section.pop("teacher", None)
    if teacher is None:
        if len(finetune) != 1:
            raise ConfigError(f"{where}.distill.teacher: name the run to distil ({', '.join(finetune)})")
        teacher = next(iter(finetune))
    if teacher not in finetune:
        raise ConfigError(f"{where}.distill.teacher: {teacher!r} is not a run ({', '.join(finetune)})")
    model = dict(section.get("model") or {})
    if "teacher" in model:
        raise ConfigError(f"{where}.distill.model.teacher: name the teacher as distill.teacher (a run)")
    section["model"] = {**model, "teacher": finetune[teacher].run_dir}
    section["run_dir"] = os.path.join(run_dir, STUDENT, "distill")
    return from_dict(DistillConfig, section, where=f"{where}.distill"), teacher


def _export(raw: dict, finetune: dict, distill: DistillConfig | None, where: str) -> dict | None:
    from jsqa_tf.export import QUANTIZATIONS

    section = _section(raw, "export", where)
    if not section:
        return None
    unknown = sorted(set(section) - set(EXPORT_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}.export: unknown key(s) {', '.join(unknown)}; known: {', '.join(EXPORT_KEYS)}"
        )
    if not isinstance(section.get("name"), str) or not section["name"]:
        raise ConfigError(f"{where}.export.name: the model's name is required (TF Serving's --model_name)")
    tflite = section.get("tflite") or []
    if not isinstance(tflite, list) or any(q not in QUANTIZATIONS or q == "int8-full" for q in tflite):
        raise ConfigError(f"{where}.export.tflite: a list of float32, float16, int8; got {tflite!r}")
    if distill is None and len(finetune) != 1:
        raise ConfigError(f"{where}.export: exports the student, or the model of a file with one run")
    return {"name": section["name"], "tflite": tflite, "check": bool(section.get("check", False))}


def _is_chief() -> bool:
    """The worker that evaluates and compares (all of them train)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    return task.get("type") in (None, "chief") or (task.get("type") == "worker" and task.get("index", 0) == 0)


def _status(config) -> str:
    """ "done" (a finished run of these settings), "started" (to continue) or "new"; a stage
    folder that holds a run of other settings is refused (`finished_run`, the stages' rule)."""
    from jsqa_tf.training.run import finished_run

    if not os.path.exists(os.path.join(config.run_dir, "config.yaml")):
        return "new"
    return "done" if finished_run(config, quiet=True) is not None else "started"


def _check_evaluation(report: dict, evaluate_config: EvaluateConfig, data: str, out_dir: str) -> None:
    """A finished evaluation must be the one asked for."""
    wanted = {
        "data": os.path.abspath(data),
        "split": evaluate_config.split,
        "databases": list(evaluate_config.databases),
        "window_seconds": evaluate_config.window_seconds,
        "num_resamples": evaluate_config.num_bootstrap,
        "seed": evaluate_config.seed,
    }
    found = {
        **{key: report.get(key) for key in wanted},
        **{key: report.get("bootstrap", {}).get(key) for key in ("num_resamples", "seed")},
    }
    if os.path.isdir(wanted["data"]) is False:
        found["split"] = wanted["split"]  # a CSV has no split
    differences = sorted(key for key in wanted if found[key] != wanted[key])
    if differences:
        raise TrainingError(
            f"{out_dir}: finished with other settings ({', '.join(differences)}); choose another run_dir"
        )


def _other_pipeline_message(run_dir: str, saved: dict, wanted: dict) -> str:
    """One line naming the first setting of the file that differs from the run's pipeline.yaml."""
    from jsqa_tf.training.run import flatten, other_settings_message

    saved, wanted = flatten(saved), flatten(wanted)
    keys = sorted(key for key in set(saved) | set(wanted) if key != "run_dir")
    differences = [
        (key, saved.get(key), wanted.get(key)) for key in keys if saved.get(key) != wanted.get(key)
    ]
    differences = differences or [("the file", "another", "this")]
    return other_settings_message(run_dir, differences, "choose another run_dir")


def train(
    raw: dict, *, resume: bool = False, where: str = "pipeline", verbose: int = 1, progress=None
) -> dict:
    """Runs every stage of a pipeline mapping; returns {run: headline figures}.

    `progress` (`jsqa_tf.progress`) shows demo data being written and prepared, by the first
    stage that needs it.

    The same file again continues (or just reports) its run (the rule of every stage,
    `jsqa_tf.training.run.finished_run`); `resume` only refuses a folder without a run.

    Raises:
        TrainingError: the run folder holds a pipeline run of other settings, or a stage
            failed (its own message).
    """
    from jsqa_tf.training.distill import distill
    from jsqa_tf.training.finetune import finetune
    from jsqa_tf.training.pretrain import pretrain

    resolved = plan(raw, where)
    pipeline_path = os.path.join(resolved.run_dir, PIPELINE_FILE)
    wanted = {**raw, "run_dir": resolved.run_dir}
    if os.path.exists(pipeline_path):
        saved = load_yaml(pipeline_path)
        # The same file again continues (or just reports) its run: finished stages are
        # skipped, never redone or overwritten; another file is refused, its first differing
        # setting named (a finished evaluation would not match a stage trained further).
        # Compared as plans: a file that says the same in other words (a key renamed since,
        # a default spelled out) is the same file; a moved run folder is the same run.
        before = plan({**saved, "run_dir": resolved.run_dir}, pipeline_path)
        if before != resolved:
            raise TrainingError(_other_pipeline_message(resolved.run_dir, saved, wanted))
    elif resume:
        raise TrainingError(
            f"{resolved.run_dir}: no run to continue (no {PIPELINE_FILE}); without --resume one starts"
        )
    os.makedirs(resolved.run_dir, exist_ok=True)
    if not os.path.exists(pipeline_path):  # the same plan again: the file stays as it was
        atomic.write_text(pipeline_path, _yaml(wanted))

    for name, config in resolved.pretrain.items():
        status = _status(config)
        logger.info("pretraining %s: %s", name, status)
        if status != "done":
            pretrain(config, resume=status == "started", verbose=verbose, progress=progress)
    results = {}
    for name, config in resolved.finetune.items():
        status = _status(config)
        logger.info("fine-tuning %s: %s", name or "the model", status)
        if status != "done":
            finetune(config, resume=status == "started", verbose=verbose, progress=progress)
        if _is_chief():
            results[name or "model"] = _evaluated(resolved, name, config.run_dir, config)
    if resolved.distill is not None:
        config = resolved.distill
        status = _status(config)
        logger.info("distilling %s into a student: %s", resolved.distill_teacher or "the model", status)
        if status != "done":
            distill(config, resume=status == "started", verbose=verbose, progress=progress)
        if _is_chief():
            teacher_config = resolved.finetune[resolved.distill_teacher]
            results[STUDENT] = _evaluated(resolved, STUDENT, config.run_dir, teacher_config)
    if resolved.export is not None and _is_chief():
        results["export"] = _exported(resolved)
    if resolved.compare is not None and _is_chief():
        _compare(resolved)
        results["compare"] = os.path.join(resolved.run_dir, "compare.md")
    if resolved.grid and _is_chief():
        _grid_summary(resolved)
        results["grid_summary"] = os.path.join(resolved.run_dir, "grid_summary.md")
    return results


def _evaluated(resolved: Plan, name: str, model_dir: str, finetune_config: FinetuneConfig) -> dict:
    """Evaluates a run's model (once; a finished evaluation is checked, not redone) and
    returns its headline figures."""
    from jsqa_tf.evaluation import METRICS_FILE, evaluate

    evaluate_config, out_dir = resolved.evaluate[name]
    data = evaluate_config.data_dir or _finetune_data(finetune_config)
    if not os.path.exists(os.path.join(out_dir, METRICS_FILE)):
        evaluate(
            model_dir,
            data,
            out_dir,
            split=evaluate_config.split,
            databases=evaluate_config.databases,
            window_seconds=evaluate_config.window_seconds,
            batch_size=evaluate_config.batch_size,
            num_bootstrap=evaluate_config.num_bootstrap,
            seed=evaluate_config.seed,
        )
    with open(os.path.join(out_dir, METRICS_FILE), encoding="utf-8") as stream:
        report = json.load(stream)
    _check_evaluation(report, evaluate_config, data, out_dir)
    figures = {
        "evaluation": out_dir,
        **{key: report["per_file"][key]["value"] for key in ("pcc", "srcc", "rmse", "mae")},
    }
    if report.get("targets"):  # a multi-target model: each target's PCC and RMSE, per file
        figures["targets"] = {
            target: None
            if entry is None
            else {key: entry["per_file"][key]["value"] for key in ("pcc", "rmse")}
            for target, entry in report["targets"].items()
        }
        logger.info(
            "%s: per-file PCC %s",
            name,
            ", ".join(
                f"{t} {v['pcc']:.3f}" for t, v in figures["targets"].items() if v and v["pcc"] is not None
            ),
        )
    return figures


EXPORT_RECORD = "export.json"


def _exported(resolved: Plan) -> dict:
    """Exports the student (or the one run's model) once: `export.json` records the version
    written, so running the pipeline again does not write another."""
    from jsqa_tf.export import export_model

    settings = resolved.export
    record_path = os.path.join(resolved.run_dir, EXPORT_RECORD)
    if os.path.exists(record_path):
        with open(record_path, encoding="utf-8") as stream:
            record = json.load(stream)
        if record.get("settings") == settings:
            return record["summary"]
        raise TrainingError(
            f"{record_path}: exported with other settings ({record.get('settings')}); "
            "export again with `jsqa-tf export`, or choose another run_dir"
        )
    source = (
        resolved.distill.run_dir
        if resolved.distill is not None
        else next(iter(resolved.finetune.values())).run_dir
    )
    summary = export_model(
        source,
        settings["name"],
        os.path.join(resolved.run_dir, "saved_models"),
        tflite=tuple(settings["tflite"]),
        check=settings["check"],
    )
    summary = json.loads(json.dumps(summary, default=str))
    atomic.write_json(record_path, {"settings": settings, "summary": summary})
    return summary


def _finetune_data(config: FinetuneConfig) -> str:
    from jsqa_tf.training.run import demo_mos_shards

    return demo_mos_shards(config.data.demo_dir) if config.data.demo_dir else config.data.data_dir


def _compare(resolved: Plan) -> None:
    from jsqa_tf.compare import compare, load_result, to_markdown

    names = list(resolved.evaluate)
    results = [load_result(resolved.evaluate[name][1], name=name) for name in names]
    baseline = resolved.compare["baseline"]
    table = compare(
        results,
        baseline=names.index(baseline) if baseline else 0,
        num_bootstrap=resolved.compare["num_bootstrap"],
        seed=resolved.compare["seed"],
    )
    atomic.write_json(os.path.join(resolved.run_dir, "compare.json"), table)
    atomic.write_text(os.path.join(resolved.run_dir, "compare.md"), to_markdown(table) + "\n")


def _grid_summary(resolved: Plan) -> None:
    """Mean and spread over seeds of each grid cell (encoder x settings): the label-efficiency
    curve, as grid_summary.json and a markdown table."""
    import numpy as np

    from jsqa_tf.evaluation import METRICS_FILE

    names = ("pcc", "srcc", "rmse", "mae")
    cells: dict[tuple, list[dict]] = {}
    for run, coordinates in resolved.grid.items():
        cell = tuple((key, value) for key, value in coordinates.items() if key != "seed")
        with open(os.path.join(resolved.evaluate[run][1], METRICS_FILE), encoding="utf-8") as stream:
            per_file = json.load(stream)["per_file"]
        cells.setdefault(cell, []).append({key: per_file[key]["value"] for key in names})
    rows = []
    for cell, figures in cells.items():
        row = {**dict(cell), "num_seeds": len(figures)}
        for key in names:
            values = np.array([f[key] for f in figures if f[key] is not None], float)
            row[key] = {
                "mean": float(values.mean()) if len(values) else None,
                "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            }
        rows.append(row)
    keys = [key for key, _ in next(iter(cells))]
    lines = ["| " + " | ".join([*keys, "seeds", "PCC", "SRCC", "RMSE", "MAE"]) + " |"]
    lines.append("|" + "---|" * (len(keys) + 5))
    for row in rows:
        texts = []
        for key in names:
            mean, std = row[key]["mean"], row[key]["std"]
            texts.append("n/a" if mean is None else f"{mean:.3f}" + ("" if std is None else f" ± {std:.3f}"))
        lines.append("| " + " | ".join([*(str(row[k]) for k in keys), str(row["num_seeds"]), *texts]) + " |")
    atomic.write_json(os.path.join(resolved.run_dir, "grid_summary.json"), rows)
    atomic.write_text(os.path.join(resolved.run_dir, "grid_summary.md"), "\n".join(lines) + "\n")


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
