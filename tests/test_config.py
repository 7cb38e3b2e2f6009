import pytest

from jsqa_tf.config import PrepareConfig, dump_yaml, from_dict, load_yaml
from jsqa_tf.errors import ConfigError


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
