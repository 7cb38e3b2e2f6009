"""Shared fixtures: tiny sizes, synthetic audio made under tmp_path, fixed seeds."""

from __future__ import annotations

import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jsqa_tf.data.demo import SMALL_DEMO, make_demo_corpus  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> dict[str, str]:
    """A small demo corpus (LibriSpeech, CHiME-3, NISQA layouts), made once per session."""
    root = tmp_path_factory.mktemp("demo") / "corpus"
    return make_demo_corpus(root, seed=0, **SMALL_DEMO)


def sine(seconds: float = 1.0, sample_rate: int = 16000, hz: float = 440.0, amplitude=0.5):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="session")
def mos_demo(tmp_path_factory) -> dict[str, str]:
    """A demo corpus with 60 MOS files (40 train, 20 val speakers' files) and short audio
    elsewhere, prepared: {"mos", "clean", "noise"} shard folders and the corpus paths."""
    from jsqa_tf.config import PrepareConfig
    from jsqa_tf.data.prepare import prepare

    root = tmp_path_factory.mktemp("mos_demo")
    sizes = dict(SMALL_DEMO, num_speakers=6, num_mos_files=60, noise_channels=1)
    paths = make_demo_corpus(root / "corpus", seed=0, **sizes)
    shards = {name: str(root / "shards" / name) for name in ("mos", "clean", "noise")}
    prepare(
        PrepareConfig(corpus="nisqa", source=paths["nisqa"], val_databases=("NISQA_VAL_SIM",), num_workers=0),
        shards["mos"],
    )
    prepare(
        PrepareConfig(corpus="librispeech", source=paths["librispeech"], val_fraction=0.3, num_workers=0),
        shards["clean"],
    )
    prepare(
        PrepareConfig(
            corpus="chime3", source=paths["chime3"], chime3_channels="all", val_fraction=0.25, num_workers=0
        ),
        shards["noise"],
    )
    return {**paths, **shards}


@pytest.fixture(scope="session")
def tiny_mos_keras(tmp_path_factory) -> str:
    """A tiny `MOSRegressor` fitted for a few steps (louder clip -> higher MOS, so its outputs
    spread over the scale instead of sitting at the sigmoid's middle), saved as a .keras file."""
    import keras

    from jsqa_tf.export import example_clips
    from jsqa_tf.models import MOSRegressor, WaveformEncoder

    keras.utils.set_random_seed(0)
    model = MOSRegressor(
        WaveformEncoder.from_preset("tiny", name="encoder"), hidden_dims=(16, 8), name="mos_regressor"
    )
    rng = np.random.default_rng(0)
    gain = rng.uniform(0.02, 1.0, (32, 1)).astype(np.float32)
    clips = np.stack([clip[:8000] for clip in example_clips([0.5] * 32, seed=1)]) * gain
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(clips, 1.0 + 4.0 * gain[:, 0], batch_size=8, epochs=6, verbose=0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_mos_keras) -> dict:
    """`export_model` of the tiny model: the SavedModel and the float32/float16/int8 TFLite files."""
    from jsqa_tf.export import export_model

    output_dir = tmp_path_factory.mktemp("saved_models")
    summary = export_model(tiny_mos_keras, "tiny", output_dir, tflite=("float32", "float16", "int8"))
    return summary | {"output_dir": str(output_dir)}
