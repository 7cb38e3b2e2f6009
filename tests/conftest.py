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
