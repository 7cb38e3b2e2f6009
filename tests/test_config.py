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
from jsqa_tf.ranges import ENCODER_PRESETS, RANGES, STUDENT_PRESETS


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
        (PretrainConfig, {"data": {"crop_seconds": 0}}, "p.yaml: data.crop_seconds must be > 0, got 0.0"),
        (PretrainConfig, {"data": {"pairs_per_batch": 1}}, "data.pairs_per_batch must be >= 2, got 1"),
        (PretrainConfig, {"data": {"val_batches": 0}}, "data.val_batches must be >= 1, got 0"),
        (
            PretrainConfig,
            {"data": {"snr_range_db": [0, float("nan")]}},
            r"data.snr_range_db\[1\] must be a finite number",
        ),
        (PretrainConfig, {"data": {"snr_window_db": 20}}, r"data.snr_window_db must be in \(0, 12\] dB"),
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


def test_missing_keys_and_every_range_names_a_real_field():
    with pytest.raises(ConfigError, match="pipeline.yaml: missing key.*run_dir"):
        from_dict(PretrainConfig, {}, where="pipeline.yaml")
    import dataclasses

    from jsqa_tf import config as config_module

    for name, (_, ranges) in RANGES.items():
        fields = {field.name for field in dataclasses.fields(getattr(config_module, name))}
        assert set(ranges) <= fields, name


def test_encoder_presets_are_those_of_the_models():
    from jsqa_tf import models

    assert set(ENCODER_PRESETS) == set(models.PRESETS)
    assert set(STUDENT_PRESETS) == set(models.STUDENT_PRESETS)
