"""Memory bounded by design: every command that cuts or loads audio estimates its peak from
the settings that scale it and refuses, before any work, with one line naming the settings
and the estimate against the memory available; under an address-space limit, the same
command with the largest settings is refused and with small ones finishes."""

import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from jsqa_lite import memory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUGE = "1000000"  # seconds: no range bounds a crop or a window from above


def test_available_memory_is_the_smallest_of_the_kernel_the_rlimit_and_the_cgroup():
    available, source = memory.available_bytes()
    assert available > 0 and source
    code = (
        "import resource; from jsqa_lite import memory; "
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, resource.RLIM_INFINITY)); "
        "print(*memory.available_bytes(), sep='|')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    limited, source = out.strip().split("|")
    assert 0 < int(limited) < 2 << 30 and source == "the address-space limit (ulimit -v)"


def test_check_fits_names_the_settings_the_estimate_and_what_is_available(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: (2e9, "MemAvailable"))
    memory.check_fits(1.9e9, "x 1", "lower x")
    with pytest.raises(memory.MemoryLimitError) as caught:
        memory.check_fits(3.5e9, "--crop-seconds 60 with 8 pairs", "lower --crop-seconds")
    assert str(caught.value) == (
        "--crop-seconds 60 with 8 pairs needs about 3.5 GB of memory, more than the 2.0 GB available "
        "(MemAvailable): lower --crop-seconds"
    )


def test_the_pairs_estimate_grows_with_crop_batch_and_records(mos_demo):
    from jsqa_tf.config import PairConfig
    from jsqa_tf.data.pairs import pairs_memory_bytes

    def estimate(**settings):
        return pairs_memory_bytes(PairConfig(mos_demo["clean"], mos_demo["noise"], **settings))

    assert estimate(crop_seconds=8.0) > 1.9 * estimate(crop_seconds=4.0)
    assert estimate(pairs_per_batch=16) > estimate(pairs_per_batch=8)
    # the measured point of PAIR_BYTES: 8 pairs of 120 s took 1.3-3.0 GB above TensorFlow's own
    assert 1.3e9 < estimate(crop_seconds=120.0) < 6e9
    # rendered families cost more (RENDER_BYTES): a reverb pair 120 bytes a sample more
    reverb, additive = estimate(crop_seconds=60.0, families=("reverb",)), estimate(crop_seconds=60.0)
    assert reverb - additive == pytest.approx(120 * 8 * 60 * 16_000)


def _limited(args, limit_gb: float, timeout=300):
    """`python -m jsqa_tf ARGS` under an address-space limit (TensorFlow maps ~2 GB at import)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (int(limit_gb * 2**30), resource.RLIM_INFINITY))

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "jsqa_tf", *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )


# Two processes each, each paying the TensorFlow import (~5 s) and a few seconds of work.
@pytest.mark.slow
def test_pairs_under_a_memory_limit_refuses_a_huge_crop_and_finishes_a_small_one(mos_demo, tmp_path):
    folders = [mos_demo["clean"], mos_demo["noise"]]
    refused = _limited(["pairs", *folders, tmp_path / "big", "-n", "2", "--crop-seconds", "1000"], 8)
    assert refused.returncode == 1, refused.stderr
    line = refused.stderr.strip().splitlines()
    assert len(line) == 1 and line[0].startswith("error: crop_seconds 1000 with pairs_per_batch 8 needs")
    assert "the address-space limit (ulimit -v)" in line[0]
    assert line[0].endswith("lower crop_seconds (--crop-seconds) or pairs_per_batch")
    assert not (tmp_path / "big").exists()
    done = _limited(["pairs", *folders, tmp_path / "small", "-n", "2"], 8)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "small" / "pairs.csv").exists()


# As above: two processes, each with the TensorFlow import and a tiny model.
@pytest.mark.slow
def test_predict_and_evaluate_under_a_memory_limit(tiny_mos_keras, tmp_path):
    from jsqa_tf.audio import write_wav

    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.wav", "c.wav"):
        write_wav(tmp_path / name, 0.1 * rng.standard_normal(16000))
    (tmp_path / "list.csv").write_text("path,mos\na.wav,2\nb.wav,3\nc.wav,4\n")
    args = ["predict", tmp_path / "a.wav", "--model", tiny_mos_keras, "--window-seconds"]
    refused = _limited([*args, HUGE], 8)
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip().splitlines()
    assert len(line) == 1 and line[0].startswith("error: --window-seconds 1e+06 with --batch-size 8 needs")
    done = _limited([*args, "10"], 8)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith(str(tmp_path / "a.wav"))
    listed = [tiny_mos_keras, tmp_path / "list.csv", "-o", tmp_path / "ev"]
    refused = _limited(["evaluate", *listed, "--window-seconds", HUGE], 8)
    assert refused.returncode == 1 and "--window-seconds 1e+06 with --batch-size 8 needs" in refused.stderr
    assert not (tmp_path / "ev").exists()


def test_finetune_refuses_a_huge_crop_before_any_model(mos_demo, tmp_path):
    from jsqa_tf.training import finetune
    from tests.test_finetune import tiny_config

    expected = r"^data.crop_seconds 1e\+06 with data.batch_size 8 needs"
    with pytest.raises(memory.MemoryLimitError, match=expected):
        finetune(tiny_config(tmp_path / "run", mos_demo["mos"], crop_seconds=float(HUGE)))
    assert not list((tmp_path / "run").glob("checkpoints/epoch-*"))


def test_finetune_on_whole_files_names_the_longest(mos_demo, tmp_path, monkeypatch):
    from jsqa_tf.training import finetune
    from tests.test_finetune import tiny_config

    monkeypatch.setattr(memory, "available_bytes", lambda: (1e6, "MemAvailable"))
    expected = r"^whole files \(the longest \d+ s\) with data.batch_size 8 needs"
    with pytest.raises(memory.MemoryLimitError, match=expected):
        finetune(tiny_config(tmp_path / "run", mos_demo["mos"], crop_seconds=None))


def test_distill_refuses_a_huge_crop_before_any_model(mos_demo, tiny_mos_keras, tmp_path):
    import dataclasses

    from jsqa_tf.training import distill
    from tests.test_distill import tiny_config

    config = tiny_config(tmp_path / "run", mos_demo, tiny_mos_keras)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, crop_seconds=float(HUGE)))
    expected = r"^data.crop_seconds 1e\+06 with data.mixtures_per_batch"
    with pytest.raises(memory.MemoryLimitError, match=expected):
        distill(config)


# One process each (the TensorFlow import, a config read, no model built).
@pytest.mark.slow
@pytest.mark.parametrize("command", ["pretrain", "finetune", "distill"])
def test_training_commands_under_a_memory_limit_refuse_a_huge_crop(
    command, mos_demo, tiny_mos_keras, tmp_path
):
    run_dir = tmp_path / "run"
    data = {
        "pretrain": ["--clean-dir", mos_demo["clean"], "--noise-dir", mos_demo["noise"]],
        "finetune": ["--data-dir", mos_demo["mos"], "--encoder", "scratch"],
        "distill": [
            *("--teacher", tiny_mos_keras, "--clean-dir", mos_demo["clean"]),
            *("--noise-dir", mos_demo["noise"], "--mos-dir", mos_demo["mos"]),
        ],
    }[command]
    config = {"pretrain": "pretrain_demo", "finetune": "finetune_nisqa", "distill": "distill_demo"}[command]
    crop = "data.pairs.crop_seconds" if command == "pretrain" else "data.crop_seconds"
    args = [command, "--config", os.path.join(REPO, "pipelines", f"{config}.yaml"), "--run-dir", run_dir]
    refused = _limited([*args, *data, "--set", f"{crop}={HUGE}"], 8)
    assert refused.returncode == 1, refused.stderr
    lines = refused.stderr.strip().splitlines()  # warnings about the crop may come first
    errors = [line for line in lines if not line.startswith("warning: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {crop} 1e+06 with "), refused.stderr
    assert "the address-space limit (ulimit -v)" in errors[0] and "Traceback" not in refused.stderr
    assert not list(run_dir.glob("checkpoints/epoch-*"))
