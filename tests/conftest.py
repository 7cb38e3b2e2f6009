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
