import os

import pytest

from jsqa_tf.config import (
    EvaluateConfig,
    FinetuneConfig,
    PairConfig,
    PrepareConfig,
    PretrainConfig,
    dump_yaml,
    from_dict,
    load_yaml,
)
from jsqa_tf.errors import ConfigError
from jsqa_tf.ranges import ENCODER_PRESETS, STUDENT_PRESETS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_yaml_round_trip(tmp_path):
    config = PrepareConfig(corpus="nisqa", source="/x.csv", databases=("A", "B"), channel=1)
    dump_yaml(config, tmp_path / "c.yaml")
    assert from_dict(PrepareConfig, load_yaml(tmp_path / "c.yaml")) == config


@pytest.mark.parametrize(
    "data,message",
    [
        ({"corpus": "folder", "source": "x", "shard_secs": 5}, "unknown key.*shard_secs"),
        ({"corpus": "folder", "source": "x", "seed": "one"}, "seed: expected an integer"),
        ({"corpus": "folder", "source": "x", "shard_seconds": True}, "expected a number"),
        ({"corpus": "folder", "source": "x", "subsets": "dev-clean"}, "expected a list"),
        ({"corpus": "folder", "source": "x", "val_fraction": 1.5}, "val_fraction must be in"),
        ({"source": "x"}, "corpus"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_configs_say_what_is_wrong(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(PrepareConfig, data)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    "cls,data,message",
    [
        (
            PretrainConfig,
            {"training": {"learning_rate": -1e-3}},
            "p.yaml: training.learning_rate must be > 0, got -0.001",
        ),
        (PretrainConfig, {"training": {"temperature": 0}}, "training.temperature must be > 0, got 0.0"),
        (PretrainConfig, {"training": {"seed": -1}}, "training.seed must be >= 0, got -1"),
        (
            PretrainConfig,
            {"model": {"preset": "huge"}},
            "model.preset must be one of jsqa, cdpam, small, tiny; got 'huge'",
        ),
        (PretrainConfig, {"model": {"kernel_size": 0}}, "model.kernel_size must be >= 1, got 0"),
        (
            PretrainConfig,
            {"model": {"projection_dropout": 1.0}},
            r"model.projection_dropout must be in \[0, 1\), got 1.0",
        ),
        (
            PretrainConfig,
            {"data": {"pairs": {"crop_seconds": 0}}},
            "p.yaml: data.pairs.crop_seconds must be > 0, got 0.0",
        ),
        (
            PretrainConfig,
            {"data": {"pairs": {"pairs_per_batch": 1}}},
            "data.pairs.pairs_per_batch must be >= 2",
        ),
        (PretrainConfig, {"data": {"val_batches": 0}}, "data.val_batches must be >= 1, got 0"),
        (
            PretrainConfig,
            {"data": {"pairs": {"snr_range_db": [0, float("nan")]}}},
            r"data.pairs.snr_range_db\[1\] must be a finite number",
        ),
        (
            PretrainConfig,
            {"data": {"pairs": {"snr_window_db": 20}}},
            r"data.pairs.snr_window_db must be in \(0, 12\] dB",
        ),
        (PretrainConfig, {"model": {"batch_norm_epsilon": 0.0}}, "model.batch_norm_epsilon must be > 0"),
        (
            PretrainConfig,
            {"training": {"steps_per_epoch": "x"}},
            "training.steps_per_epoch: expected an integer, got 'x'",
        ),
        (PretrainConfig, {"training": {"learning_rat": 1}}, "p.yaml: training: unknown key.*learning_rat"),
        (PrepareConfig, {"sample_rate": 7}, r"p.yaml: sample_rate must be in \[4000, 192000\] Hz, got 7"),
        (PrepareConfig, {"min_seconds": -1}, "min_seconds must be >= 0, got -1.0"),
        (PrepareConfig, {"channel": -1}, "channel must be >= 0, got -1"),
        (
            PrepareConfig,
            {"mos_range": [5, 1]},
            r"mos_range must be \[low, high\] with low < high, got \[5.0, 1.0\]",
        ),
        (FinetuneConfig, {"training": {"learning_rate": 0}}, "training.learning_rate must be > 0, got 0.0"),
        (FinetuneConfig, {"training": {"steps_per_epoch": "x"}}, r"expected an integer, got 'x' \(or null\)"),
        (
            FinetuneConfig,
            {"data": {"train_fraction": 0}},
            r"data.train_fraction must be in \(0, 1\], got 0.0",
        ),
        (FinetuneConfig, {"model": {"hidden_dims": [32, 0]}}, r"model.hidden_dims\[1\] must be >= 1, got 0"),
        (EvaluateConfig, {"num_bootstrap": -1}, "evaluate.num_bootstrap must be >= 0, got -1"),
    ],
)
def test_every_numeric_setting_is_checked_with_its_path_and_value(cls, data, message):
    base = {
        PretrainConfig: {"run_dir": "r"},
        PrepareConfig: {"corpus": "folder", "source": "x"},
        FinetuneConfig: {},
        EvaluateConfig: {},
    }[cls]
    with pytest.raises(ConfigError, match=message):
        from_dict(cls, {**base, **data}, where="p.yaml")


def test_pair_config_errors_name_field_and_value():
    with pytest.raises(ConfigError, match="^crop_seconds must be > 0, got 0"):
        PairConfig("c", "n", crop_seconds=0)
    with pytest.raises(ConfigError, match="^pairs_per_batch must be >= 2, got 1$"):
        PairConfig("c", "n", pairs_per_batch=1)
    with pytest.raises(ConfigError, match=r"^sample_rate must be in \[4000, 192000\] Hz, got 7$"):
        PairConfig("c", "n", sample_rate=7)


def test_missing_keys():
    with pytest.raises(ConfigError, match="pipeline.yaml: missing key.*run_dir"):
        from_dict(PretrainConfig, {}, where="pipeline.yaml")


def _numeric(annotation) -> bool:
    """int or float, alone, optional or as a tuple's items (bool is not a number here)."""
    import types
    import typing

    if typing.get_origin(annotation) in (typing.Union, types.UnionType, tuple):
        return any(_numeric(option) for option in typing.get_args(annotation) if option is not Ellipsis)
    return annotation in (int, float)


def test_every_numeric_field_of_every_config_declares_its_range():
    """A new numeric setting cannot forget its range: `setting(default, range)`."""
    import dataclasses
    import typing

    from jsqa_tf import config as config_module
    from jsqa_tf.ranges import RANGE

    classes = [
        value
        for value in vars(config_module).values()
        if isinstance(value, type)
        and dataclasses.is_dataclass(value)
        and value.__module__ == config_module.__name__
    ]
    assert len(classes) >= 15
    missing = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if _numeric(hints[field.name]) and RANGE not in field.metadata:
                missing.append(f"{cls.__name__}.{field.name}")
    assert not missing, f"numeric fields without a range (use ranges.setting): {missing}"
    assert _numeric(int | None) and _numeric(tuple[float, ...]) and not _numeric(bool | None)


def test_run_and_pair_settings_are_defined_once():
    """The three training sections share `RunSettings`; pretraining's data holds a
    `PairSampling`, and `PairConfig` is one plus where the audio is."""
    import dataclasses

    from jsqa_tf.config import (
        DistillTrainingConfig,
        FinetuneTrainingConfig,
        PairSampling,
        PretrainTrainingConfig,
        RunSettings,
    )

    run_fields = {field.name for field in dataclasses.fields(RunSettings)}
    assert run_fields == {"precision", "jit_compile", "strategy", "seed", "deterministic", "keep_checkpoints"}
    for cls in (PretrainTrainingConfig, FinetuneTrainingConfig, DistillTrainingConfig):
        assert issubclass(cls, RunSettings) and not run_fields & set(vars(cls).get("__annotations__", {}))
    pretrain = PretrainConfig("run")
    assert pretrain.data.pairs == PairSampling()
    pairs = pretrain.pair_config("val", "c", "n", 16)
    assert (pairs.split, pairs.pairs_per_batch, pairs.crop_seconds) == ("val", 16, 4.0)
    assert isinstance(pairs, PairSampling) and not isinstance(pretrain.data, PairSampling)
    # A pretraining file's data.pairs section is a file `jsqa-tf pairs --config` reads.
    section = load_yaml(os.path.join(REPO, "pipelines", "pretrain_demo.yaml"))["data"]["pairs"]
    drawn = from_dict(PairConfig, {"clean_dir": "c", "noise_dir": "n", **section}, where="pairs.yaml")
    assert drawn.crop_seconds == 1.0 and drawn.pairs_per_batch == 8


def test_encoder_presets_are_those_of_the_models():
    from jsqa_tf import models

    assert set(ENCODER_PRESETS) == set(models.PRESETS)
    assert set(STUDENT_PRESETS) == set(models.STUDENT_PRESETS)


# A pretraining run folder's config.yaml as jsqa-tf wrote it before the pair settings had
# their own section (data.pairs).
OLD_RUN_CONFIG = """\
run_dir: RUN
data:
  clean_dir: c
  noise_dir: n
  demo_dir: null
  crop_seconds: 0.5
  pairs_per_batch: 4
  snr_range_db:
  - -3.0
  - 9.0
  snr_window_db: 6.0
  snr_window_low_db: null
  max_abs_delta_db: 2.0
  snr_placement: uniform_window
  val_batches: 2
  noise_bank_max_mb: 1200.0
  max_crops_per_file: null
model:
  preset: tiny
  projection: true
  projection_dropout: 0.1
training:
  epochs: 3
  learning_rate: 0.001
  precision: float32
  seed: 0
  keep_checkpoints: 3
"""


def test_an_old_file_is_read_with_one_line_naming_the_new_keys(tmp_path, caplog):
    path = tmp_path / "old.yaml"
    path.write_text(OLD_RUN_CONFIG)
    with caplog.at_level("WARNING", logger="jsqa_tf.config"):
        config = from_dict(PretrainConfig, load_yaml(path), where=str(path))
    assert (config.data.pairs.crop_seconds, config.data.pairs.pairs_per_batch) == (0.5, 4)
    assert config.data.pairs.max_abs_delta_db == 2.0 and config.data.val_batches == 2
    [line] = [record.getMessage() for record in caplog.records]
    assert line.startswith(f"{path}: renamed key(s) read under their new names: ")
    assert "data.crop_seconds -> data.pairs.crop_seconds" in line
    assert "data.max_crops_per_file -> data.pairs.max_crops_per_file" in line
    # An old key given as an override (--set data.crop_seconds=...) wins over the file's new one.
    both = {"run_dir": "r", "data": {"pairs": {"crop_seconds": 4.0}, "crop_seconds": 0.5}}
    assert from_dict(PretrainConfig, both).data.pairs.crop_seconds == 0.5
    with pytest.raises(ConfigError, match=r"p.yaml: data.pairs.crop_seconds must be > 0, got 0.0"):
        from_dict(PretrainConfig, {"run_dir": "r", "data": {"crop_seconds": 0}}, where="p.yaml")


def test_an_old_run_folder_resumes_and_its_config_is_rewritten(tmp_path, caplog):
    from jsqa_tf.training.run import _open_run_dir, config_differences, finished_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(OLD_RUN_CONFIG.replace("RUN", str(run_dir)))
    (run_dir / "summary.json").write_text('{"epochs_done": 3}')
    config = from_dict(PretrainConfig, load_yaml(run_dir / "config.yaml"))
    assert config_differences(config) == []
    assert finished_run(config) == {"epochs_done": 3}  # the same settings: nothing to redo
    longer = from_dict(PretrainConfig, {**load_yaml(run_dir / "config.yaml"), "training": {"epochs": 5}})
    with caplog.at_level("WARNING", logger="jsqa_tf.config"):
        assert _open_run_dir(longer, resume=True) == {}  # no checkpoint: starts from epoch 1
    assert any("renamed key(s)" in record.getMessage() for record in caplog.records)
    saved = load_yaml(run_dir / "config.yaml")
    assert saved["data"]["pairs"]["crop_seconds"] == 0.5 and "crop_seconds" not in saved["data"]
    assert saved["training"]["epochs"] == 5
