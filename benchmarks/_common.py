"""What the benchmarks share: a run's facts and its JSON, time windows, corpora, calibrated models.

Output. Every benchmark prints its figures; `--json PATH` also writes them, atomically, as one
JSON object that opens with the run's facts (`RunFacts`): `machine` (CPU model and cores, and
the GPUs when there are any), `machine_detail`, `date`, `command` (the exact command line),
`versions` (jsqa-tf and the frameworks the run imported), `git_commit`, `load_average_1min`
(start and end) and `wall_seconds`; `--json` without a path prints that object alone. The
docs quote figures from such files (`docs/results/`).

Timing. `time_window` calls a function for a window of wall time after a warm-up, and
`read_rate` reads a tf.data pipeline that way. A fixed number of batches is the wrong window
for a fast pipeline: tf.data buffers output while it warms up, and a window of a few hundred
batches (a fraction of a second) counts that buffer as throughput.

Corpora. `write_prepared_corpus` cuts files of given lengths from source signals (audio files,
or speech and noise made by the demo corpus's synthesisers) and prepares them with
`jsqa_tf.data.prepare`; `demo_corpus` and `demo_mos_files` serve the demo corpus
(`jsqa_tf.data.demo`). `calibrated_model` builds a preset with the library's builders and
calibrates it (`jsqa_tf.models.calibration`).

This module imports neither TensorFlow nor Keras (`fit_jsqa_jax.py` runs where there is no
TensorFlow): what needs them imports them when called.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from jsqa_lite.contract import SAMPLE_RATE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
FRAMEWORKS = ("tensorflow", "keras", "jax", "ai_edge_litert", "numpy")
JSON_OPTION = dict(
    nargs="?",
    const="-",
    metavar="PATH",
    help="also write the figures and the run's facts as one JSON object to PATH (a new file); "
    "without PATH, print only that JSON",
)


# --- the run's facts and its JSON --------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or what `platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """The NVIDIA GPUs' names (nvidia-smi, else the driver's /proc files); [] without any."""
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if result.returncode == 0:
            return [line.strip() for line in result.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    names = []
    for path in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        with open(path, encoding="utf-8", errors="replace") as stream:
            names += [line.split(":", 1)[1].strip() for line in stream if line.startswith("Model:")]
    return names


def git_commit() -> str | None:
    """The repository's commit, with "-dirty" when tracked files differ from it; None outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def command_line(script: str, argv: Sequence[str]) -> str:
    """`python benchmarks/NAME.py ARGS`, with the Keras backend when it is not TensorFlow's."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    prefix = [] if backend == "tensorflow" else [f"KERAS_BACKEND={backend}"]
    return shlex.join([*prefix, "python", os.path.relpath(os.path.abspath(script), REPO), *argv])


class RunFacts:
    """Where, when and how a benchmark ran; made when it starts.

    Args:
        script: the benchmark's file (`__file__`).
        argv: the arguments it parsed (None: this process's `sys.argv[1:]`).
    """

    def __init__(self, script: str, argv: Sequence[str] | None = None):
        self.command = command_line(script, sys.argv[1:] if argv is None else list(argv))
        self.started = time.time()
        self.load_start = os.getloadavg()[0]

    def as_dict(self) -> dict:
        import jsqa_tf

        gpus = gpu_names()
        cores = os.cpu_count()
        machine = f"{cores}-core {cpu_model()}" + (f", {len(gpus)}x {gpus[0]}" if gpus else "")
        versions = {"jsqa_tf": jsqa_tf.__version__, "python": platform.python_version()}
        versions |= {
            name: getattr(sys.modules[name], "__version__", "?") for name in FRAMEWORKS if name in sys.modules
        }
        return {
            "machine": machine,
            "machine_detail": {
                "cpu": cpu_model(),
                "cpu_count": cores,
                "gpus": gpus,
                "platform": platform.platform(),
                "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
            },
            "date": datetime.date.fromtimestamp(self.started).isoformat(),
            "command": self.command,
            "versions": versions,
            "git_commit": git_commit(),
            "load_average_1min": [round(self.load_start, 2), round(os.getloadavg()[0], 2)],
            "wall_seconds": round(time.time() - self.started, 1),
        }


def check_json_path(parser, path: str | None) -> None:
    """Refuses (one line, before any work) a `--json` file that exists or cannot be written."""
    if path in (None, "-"):
        return
    from jsqa_tf.atomic import check_writable
    from jsqa_tf.errors import JSQAError

    if os.path.exists(path):
        parser.error(f"--json {path}: exists; name a new file (finished results are not overwritten)")
    try:
        check_writable(path)
    except JSQAError as error:
        parser.error(f"--json {path}: {error}")


def report(facts: RunFacts, figures: dict, lines: Sequence[str], json_path: str | None) -> dict:
    """Prints `lines` (or, for `--json` without a path, the JSON alone) and writes the JSON to
    `json_path`; returns the JSON object: the run's facts, then `figures`."""
    from jsqa_tf.atomic import write_json

    data = facts.as_dict() | figures
    if json_path == "-":
        print(json.dumps(data, indent=1), flush=True)
        return data
    if lines:
        print("\n".join(lines), flush=True)
    if json_path:
        write_json(json_path, data)
        print(f"wrote {json_path}", flush=True)
    return data


def settings(args, *names: str) -> dict:
    """The parsed options a JSON records (all but `json`, or those named)."""
    values = vars(args)
    return {name: values[name] for name in (names or values) if name != "json"}


# --- timing -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Window:
    """One timed window: calls made, wall and process CPU seconds, each call's seconds, the
    1-min load average at its end."""

    calls: int
    seconds: float
    cpu_seconds: float
    call_seconds: list[float]
    load_average_1min: float

    def per_second(self, items_per_call: float = 1.0) -> float:
        return self.calls * items_per_call / self.seconds

    def cpu_ms_per_item(self, items_per_call: float = 1.0) -> float:
        return 1000 * self.cpu_seconds / (self.calls * items_per_call)

    def median_call_seconds(self) -> float:
        return statistics.median(self.call_seconds)


def time_window(
    call: Callable[[], object],
    seconds: float,
    *,
    warmup_seconds: float = 0.0,
    warmup_calls: int = 0,
    max_calls: int | None = None,
    min_calls: int = 1,
) -> Window:
    """Calls `call` for at least `warmup_calls` and `warmup_seconds` untimed, then times calls
    until `seconds` of wall time have passed (at least `min_calls`, at most `max_calls` once
    the window is over the minimum). CPU time is the whole process's (every thread's)."""
    start, done = time.perf_counter(), 0
    while done < warmup_calls or time.perf_counter() - start < warmup_seconds:
        call()
        done += 1
    durations = []
    cpu_start, start = time.process_time(), time.perf_counter()
    while True:
        begin = time.perf_counter()
        call()
        durations.append(time.perf_counter() - begin)
        elapsed = time.perf_counter() - start
        if len(durations) >= min_calls and (
            elapsed >= seconds or (max_calls is not None and len(durations) >= max_calls)
        ):
            break
    return Window(len(durations), elapsed, time.process_time() - cpu_start, durations, os.getloadavg()[0])


def read_rate(dataset, items_per_batch: int, seconds: float, warmup_seconds: float) -> Window:
    """Reads a tf.data pipeline for a window (after a warm-up), touching each batch's first
    sample as a train step would (of a dict batch, its first key's: "audio", "audio_a")."""
    iterator = iter(dataset)

    def read():
        batch = next(iterator)
        if isinstance(batch, dict):
            batch = batch[min(batch)]
        first = batch[0] if isinstance(batch, tuple) else batch
        return float(first[0, 0])

    return time_window(read, seconds, warmup_seconds=warmup_seconds)


def summary(values: Sequence[float], digits: int = 1) -> dict:
    """{"median", "min", "max"} of several rounds, rounded."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


# --- corpora ------------------------------------------------------------------------------------


def audio_sources(folder: str) -> list[np.ndarray]:
    """Every audio file under `folder`, 16 kHz mono; SystemExit when there is none."""
    from jsqa_tf.audio import read_audio

    paths = sorted(
        path
        for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
        if path.lower().endswith(AUDIO_EXTENSIONS)
    )
    if not paths:
        raise SystemExit(f"error: no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {folder}")
    return [read_audio(path, SAMPLE_RATE) for path in paths]


def synthetic_sources(kind: str, rng: np.random.Generator, seconds: float) -> list[np.ndarray]:
    """Four signals of `seconds` from the demo corpus's synthesisers: speech of four voices
    ("speech"), or one scene of each CHiME-3 environment ("noise")."""
    from jsqa_tf.data.demo import synth_noise, synth_speech

    if kind == "speech":
        return [
            synth_speech(rng, seconds, f0_hz=rng.uniform(100, 220), formant_scale=rng.uniform(0.95, 1.2))
            for _ in range(4)
        ]
    return [synth_noise(rng, environment, seconds) for environment in ("BUS", "CAF", "PED", "STR")]


def cut(sources: Sequence[np.ndarray], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """`seconds` of one source from a random offset, looped, at a random level (-6..0 dB below
    a 0.9 peak)."""
    source = sources[rng.integers(len(sources))]
    looped = np.resize(np.roll(source, -int(rng.integers(len(source)))), int(seconds * SAMPLE_RATE))
    peak = max(float(np.max(np.abs(looped))), 1e-6)
    return (looped * (0.9 / peak) * 10 ** (rng.uniform(-6, 0) / 20)).astype(np.float32)


def write_prepared_corpus(
    folder: str,
    make_sources: Callable[[], Sequence[np.ndarray]],
    rng: np.random.Generator,
    *,
    total_seconds: float | None = None,
    num_files: int | None = None,
    file_seconds: tuple[float, float] = (3.0, 15.0),
    num_shards: int = 1,
    num_workers: int | None = None,
) -> str:
    """Writes WAV files cut from the signals `make_sources()` returns (lengths uniform in
    `file_seconds`) under `folder/audio` until `total_seconds` or `num_files`, and prepares them
    into `num_shards` train shards in `folder/shards`; returns that folder. A `folder/shards`
    that holds a manifest already (an earlier run's) is returned as it is, and `make_sources`
    is not called. `num_workers`: prepare's
    decoding processes (default: 2, or none for less than 10 minutes of audio, where starting
    them takes longer than the work)."""
    from jsqa_tf.audio import write_wav
    from jsqa_tf.config import PrepareConfig
    from jsqa_tf.data.prepare import prepare

    if total_seconds is None and num_files is None:
        raise ValueError("give total_seconds or num_files")
    shards = os.path.join(folder, "shards")
    if os.path.isfile(os.path.join(shards, "manifest.json")):
        return shards
    audio_dir, sources = os.path.join(folder, "audio"), make_sources()
    written, index = 0.0, 0
    while (num_files is None or index < num_files) and (total_seconds is None or written < total_seconds):
        seconds = float(rng.uniform(*file_seconds))
        write_wav(os.path.join(audio_dir, f"{index:05d}.wav"), cut(sources, seconds, rng))
        written, index = written + seconds, index + 1
    if num_workers is None:
        num_workers = 2 if written >= 600 else 0
    config = PrepareConfig(
        corpus="folder", source=audio_dir, shard_seconds=written / num_shards + 1.0, num_workers=num_workers
    )
    prepare(config, shards)
    return shards


def demo_corpus(root: str, *, small: bool = False, seed: int = 0) -> dict[str, str]:
    """The demo corpus at `root` (`jsqa_tf.data.demo.demo_paths`): the one there, of whatever
    size (`jsqa-tf demo-data ROOT`, or an earlier run's), or one written now (`small`: the
    sizes of `jsqa-tf demo-data --small`)."""
    from jsqa_tf.data.demo import MARKER_NAME, SMALL_DEMO, demo_paths, make_demo_corpus

    if os.path.isfile(os.path.join(root, MARKER_NAME)):
        return demo_paths(root)
    return make_demo_corpus(root, seed=seed, **(SMALL_DEMO if small else {}))


def demo_mos_files(paths: dict[str, str]) -> dict[str, list[tuple[np.ndarray, float]]]:
    """The demo's NISQA-like files at 16 kHz with their MOS labels: {"train": the
    NISQA_TRAIN_SIM files, "val": the NISQA_VAL_SIM files (other speakers)}."""
    from jsqa_tf.audio import read_audio
    from jsqa_tf.data.corpora import read_nisqa

    files = {"train": [], "val": []}
    for record in read_nisqa(paths["nisqa"]).records:
        files["val" if "VAL" in record.database else "train"].append((read_audio(record.path), record.mos))
    return files


# --- models -------------------------------------------------------------------------------------


def calibrated_model(
    preset: str,
    clips: np.ndarray,
    targets: np.ndarray,
    *,
    seed: int = 0,
    hidden_dims: tuple[int, ...] | None = None,
    batch_norm_clips: np.ndarray | None = None,
    epochs: int = 300,
    learning_rate: float = 3e-3,
):
    """A preset's `MOSRegressor` (`encoder_from_preset`), calibrated on `clips` to `targets`
    (`jsqa_tf.models.calibration.calibrate`); returns (model, its MOS of `clips`)."""
    import keras

    from jsqa_tf.models import MOSRegressor, encoder_from_preset
    from jsqa_tf.models.calibration import calibrate

    keras.utils.set_random_seed(seed)
    head = {} if hidden_dims is None else {"hidden_dims": tuple(hidden_dims)}
    model = MOSRegressor(encoder_from_preset(preset, name="encoder"), **head, name="mos_regressor")
    fitted = calibrate(
        model, clips, targets, batch_norm_clips=batch_norm_clips, epochs=epochs, learning_rate=learning_rate
    )
    return model, fitted
