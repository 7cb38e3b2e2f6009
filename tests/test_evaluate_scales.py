"""`evaluate` on lists as users write them: labels on any scale (--mos-range), with the model's
MOS mapped onto it from its head's range, and a UTF-8 BOM."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from jsqa_tf.audio import write_wav
from jsqa_tf.cli import main
from jsqa_tf.evaluation import to_scale


@pytest.fixture
def files(tmp_path):
    """Six clips, louder ones labelled higher (the tiny model's trend), on 1-5."""
    rng = np.random.default_rng(0)
    labels = {}
    for index, gain in enumerate((0.05, 0.1, 0.2, 0.4, 0.6, 0.9)):
        write_wav(tmp_path / f"f{index}.wav", gain * rng.standard_normal(8000))
        labels[f"f{index}.wav"] = round(1 + 4 * gain, 3)
    return tmp_path, labels


def write_list(path, rows, encoding="utf-8"):
    path.write_bytes(
        ("path,mos\n" + "".join(f"{name},{mos:g}\n" for name, mos in rows.items())).encode(encoding)
    )
    return path


def evaluate(*args):
    return CliRunner().invoke(main, ["evaluate", *[str(a) for a in args], "--bootstrap", "20"])


def test_labels_on_another_scale_are_evaluated_on_that_scale(files, tiny_mos_keras):
    root, labels = files
    five = write_list(root / "five.csv", labels)
    mushra = write_list(
        root / "mushra.csv", {k: (v - 1) * 25 for k, v in labels.items()}, "utf-8-sig"
    )  # a BOM
    result = evaluate(tiny_mos_keras, five, "-o", root / "e5")
    assert result.exit_code == 0, result.output
    result = evaluate(tiny_mos_keras, mushra, "-o", root / "e100", "--mos-range", "0", "100")
    assert result.exit_code == 0, result.output
    on_five = json.loads((root / "e5" / "metrics.json").read_text())
    on_hundred = json.loads((root / "e100" / "metrics.json").read_text())
    assert on_five["mos_range"] == [1.0, 5.0] and on_hundred["mos_range"] == [0.0, 100.0]
    assert on_hundred["model_mos_range"] == [1.0, 5.0]
    # the same files, the same model: correlations agree, errors scale with the scale (x25)
    for name in ("pcc", "srcc"):
        assert on_hundred["per_file"][name]["value"] == pytest.approx(
            on_five["per_file"][name]["value"], abs=1e-6
        )
    for name in ("rmse", "mae"):
        assert on_hundred["per_file"][name]["value"] == pytest.approx(25 * on_five["per_file"][name]["value"])
    predicted = [
        line.split(",")[-1] for line in (root / "e100" / "predictions.csv").read_text().splitlines()[1:]
    ]
    assert all(0 <= float(value) <= 100 for value in predicted)


def test_a_list_on_another_scale_without_mos_range_says_how(files, tiny_mos_keras):
    root, labels = files
    mushra = write_list(root / "mushra.csv", {k: (v - 1) * 25 for k, v in labels.items()})
    result = evaluate(tiny_mos_keras, mushra, "-o", root / "out")
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {mushra}: line ") and "is outside the scale [1, 5]" in line
    assert line.endswith("(a list on another scale: --mos-range LOW HIGH)")
    result = evaluate(tiny_mos_keras, mushra, "-o", root / "out", "--mos-range", "100", "0")
    assert result.exit_code == 1 and "LOW must be below HIGH" in result.stderr
    assert not (root / "out").exists()


def test_to_scale_maps_the_model_range_onto_the_labels():
    values = np.array([1.0, 3.0, 5.0])
    np.testing.assert_allclose(to_scale(values, (1, 5), (0, 100)), [0, 50, 100])
    np.testing.assert_allclose(to_scale(values, (1, 5), (10, 70)), [10, 40, 70])
    assert to_scale(values, (1, 5), (1, 5)) is values
