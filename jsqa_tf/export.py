"""Export of a trained `MOSRegressor` for TF Serving (SavedModel) and devices (TFLite / LiteRT).

Every exported form keeps the input contract of `jsqa_lite.contract`: input `waveform`,
float32 [batch, samples], 16 kHz mono in [-1, 1], at least `MIN_SAMPLES` (0.25 s), rows of a
batch of one length (zero padding is not masked); outputs `mos` float32 [batch] in the model's
`mos_range` and `embedding` float32 [batch, d]. A multi-target model (`model.targets`, e.g.
mos, noi, col, dis, loud) has one float32 [batch] output per target, named after it, each in
its range, beside `embedding`; its contract lists them under "targets" and "outputs".

The SavedModel's `serving_default` signature (method `tensorflow/serving/predict`) takes the
input named `waveform` and returns `mos` and `embedding`; the TFLite models carry the same
signature, builtin ops only, with a dynamic [-1, -1] input. Audio longer than the window a
caller chooses is scored in windows and averaged (`jsqa_lite.scoring`), outside the model.

Why the module holds raw variables: `tf.saved_model.save` of a module that tracks a Keras 3
model reloads with `tf.saved_model.load` but fails in the v1 loader TF Serving uses ("Could not
find variable ..."), and converts to a TFLite file that outputs NaN; `model.export()` stores every
variable twice (keras-team/keras#23553). `_ServingModule` tracks each underlying `tf.Variable`
exactly once and calls the model inside a `tf.function` with an explicit input signature.

One check serves the Python model, the SavedModel (through the v1 loader, fed from a
`PredictRequest` passed through its wire format, as TF Serving would) and each TFLite model:
`check_parity` scores the same clips of several lengths with each and compares the MOS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence

import numpy as np

import jsqa_tf
from jsqa_lite.contract import (
    EMBEDDING_OUTPUT,
    INPUT_NAME,
    INT8_CHUNKS_KEY,
    MASKED_SIGNATURE_KEY,
    MIN_SECONDS,
    MOS_OUTPUT,
    NUM_VALID_NAME,
    SAMPLE_RATE,
    SIGNATURE_KEY,
    input_spec,
    saved_model_contract_path,
    tflite_contract_path,
)
from jsqa_lite.errors import ModelError
from jsqa_lite.lite_model import LiteModel
from jsqa_lite.scoring import stack_scores
from jsqa_tf import provenance
from jsqa_tf.atomic import write_json
from jsqa_tf.ranges import model_targets

logger = logging.getLogger(__name__)

SERVING_TAG = "serve"
PREDICT_METHOD = "tensorflow/serving/predict"
WARMUP_FILE = "tf_serving_warmup_requests"
TFLITE_DIR = "tflite"  # saved_models/NAME/tflite/<version>/: not an integer, so Serving ignores it

QUANTIZATIONS = ("float32", "float16", "int8", "int8-full")
"""TFLite variants: float32; float16 weights; int8 dynamic-range (int8 weights, float
activations); int8-full (int8 weights and activations, calibrated on a representative dataset
drawn from prepared training shards; input and outputs stay float32)."""

MOS_TOLERANCE = {
    "saved_model": 1e-5,
    "saved_model_masked": 1e-5,
    "float32": 1e-4,
    "float16": 1e-2,
    "int8": 0.05,
    "int8-full": 0.25,
}
"""Largest |MOS - Keras MOS| `check_parity` accepts, per form. int8-full (activations in int8
too) depends on its calibration data and is looser: 0.16 measured on the tests' tiny model, on
a 0.25 s clip (0.006 to 0.03 on 1 to 10 s clips)."""

WEIGHT_BYTES = {"float32": 4, "float16": 2, "int8": 1, "int8-full": 1}
PARITY_SECONDS = (MIN_SECONDS, 1.0, 3.7, 10.0)
"""Lengths of the clips `check_parity` scores: the minimum, short, typical and long."""

_INCOMPLETE = re.compile(r"^\.incomplete-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]+$")


# --- SavedModel ----------------------------------------------------------------------------------


def _serving_module(model, masked: bool = True):
    """The module `save_serving_model` saves: `serve`, and with `masked` `serve_masked` (not
    attached without it: `tf.saved_model.save` traces every function the module holds)."""
    import tensorflow as tf

    class _ServingModule(tf.Module):
        """Tracks each of the model's `tf.Variable`s once; the model itself is not tracked."""

        def __init__(self):
            super().__init__(name="jsqa_serving")
            # KerasVariable.value is the tf.Variable: tracking these (and not the Keras
            # objects) writes every weight once, under names the v1 loader restores.
            self.model_variables = [variable.value for variable in model.variables]

            targets = model_targets(model)

            def outputs_of(embedding):
                scores = model.head(embedding, training=False)
                outputs = {EMBEDDING_OUTPUT: tf.cast(embedding, tf.float32)}
                if targets == (MOS_OUTPUT,):
                    return {MOS_OUTPUT: tf.reshape(scores, [-1]), **outputs}
                return {target: scores[:, index] for index, target in enumerate(targets)} | outputs

            @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name=INPUT_NAME)])
            def serve(waveform):
                return outputs_of(model.embed(waveform, training=False))

            @tf.function(
                input_signature=[
                    tf.TensorSpec([None, None], tf.float32, name=INPUT_NAME),
                    tf.TensorSpec([None], tf.int32, name=NUM_VALID_NAME),
                ]
            )
            def serve_masked(waveform, num_valid_samples):
                inputs = {"waveform": waveform, "num_valid_samples": num_valid_samples}
                return outputs_of(model.embed(inputs, training=False))

            self.serve = serve
            if masked:
                self.serve_masked = serve_masked

    return _ServingModule()


def next_version(base_path: str | os.PathLike) -> int:
    """max(existing integer versions) + 1, or 1 for a new base path."""
    versions = [int(name) for name in _listdir(base_path) if name.isdigit()]
    return max(versions, default=0) + 1


def list_versions(base_path: str | os.PathLike) -> list[int]:
    """The complete versions under a TF Serving base path, ascending."""
    base_path = os.fspath(base_path)
    return sorted(
        int(name)
        for name in _listdir(base_path)
        if name.isdigit() and os.path.isfile(os.path.join(base_path, name, "saved_model.pb"))
    )


def _listdir(path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _remove_dead_incomplete(base_path: str) -> None:
    """Removes temporary folders of exports that were killed on this host (their pid is gone)."""
    host = socket.gethostname()
    for name in _listdir(base_path):
        match = _INCOMPLETE.match(name)
        if not match or match["host"] != host:
            continue
        try:
            os.kill(int(match["pid"]), 0)
            continue  # still running (another export)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        logger.info("removing %s, left by an interrupted export", name)
        shutil.rmtree(os.path.join(base_path, name), ignore_errors=True)


@contextlib.contextmanager
def _incomplete_folder(base_path: str):
    """A temporary folder beside the versions, removed when the block ends (its contents are
    renamed away when the export succeeds)."""
    name = f".incomplete-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path = os.path.join(base_path, name)
    try:
        os.makedirs(base_path, exist_ok=True)
        _remove_dead_incomplete(base_path)
        os.mkdir(path)
    except OSError as error:
        raise ModelError(base_path, f"cannot write the export here ({error.strerror})")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _publish(temp_dir: str, base_path: str) -> tuple[int, str]:
    """Renames the finished folder to the next free version; never replaces a version.

    rename(2) of a folder onto a non-empty folder fails, so an export that lost a race for a
    number to another one retries with the next; no empty or partial version folder ever exists.
    """
    for _ in range(100):
        version = next_version(base_path)
        target = os.path.join(base_path, str(version))
        try:
            os.rename(temp_dir, target)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                continue
            raise
        return version, target
    raise ModelError(base_path, "could not claim a new version number")


def _variables_bytes(saved_model_dir: str) -> int:
    folder = os.path.join(saved_model_dir, "variables")
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))


def _weights_bytes(model) -> int:
    return int(sum(np.prod(v.shape) for v in model.variables)) * 4


def save_serving_model(model, directory: str | os.PathLike, masked: bool = True) -> dict:
    """Writes the SavedModel to `directory` (which must not exist).

    Its signatures: `serving_default` (`waveform`: rows of one length) and, with `masked`,
    `serving_masked` (`waveform` zero-padded + `num_valid_samples`: rows of any lengths, each
    scored as if alone; one traced shape serves files of many lengths, which is how `predict`
    keeps its memory flat over thousands of file lengths).

    Returns:
        {"variables_bytes", "weights_bytes"}.

    Raises:
        ModelError: the variables are not about the size of the float32 weights (stored twice).
    """
    import tensorflow as tf

    directory = os.fspath(directory)
    module = _serving_module(model, masked)
    signatures = {SIGNATURE_KEY: module.serve.get_concrete_function()}
    if masked:
        signatures[MASKED_SIGNATURE_KEY] = module.serve_masked.get_concrete_function()
    tf.saved_model.save(module, directory, signatures=signatures)
    stored, weights = _variables_bytes(directory), _weights_bytes(model)
    if not 0.9 * weights <= stored <= 1.25 * weights + 64 * 1024:
        raise ModelError(directory, f"variables hold {stored} bytes for {weights} bytes of float32 weights")
    return {"variables_bytes": stored, "weights_bytes": weights}


def predict_request(waveform: np.ndarray, model_name: str, num_valid_samples: np.ndarray | None = None):
    """A TF Serving `PredictRequest` (tensorflow-serving-api protos): for `serving_default`, or
    with `num_valid_samples` for `serving_masked`."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = SIGNATURE_KEY if num_valid_samples is None else MASKED_SIGNATURE_KEY
    request.inputs[INPUT_NAME].CopyFrom(tf.make_tensor_proto(np.asarray(waveform, dtype=np.float32)))
    if num_valid_samples is not None:
        lengths = np.asarray(num_valid_samples, dtype=np.int32)
        request.inputs[NUM_VALID_NAME].CopyFrom(tf.make_tensor_proto(lengths))
    return request


def write_warmup_requests(directory: str, model_name: str) -> str:
    """assets.extra/tf_serving_warmup_requests: TF Serving runs these before it serves."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    folder = os.path.join(directory, "assets.extra")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, WARMUP_FILE)
    clips = example_clips((1.0, 10.0), seed=0)
    with tf.io.TFRecordWriter(path) as writer:
        for clip in clips:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=predict_request(clip[None], model_name))
            )
            writer.write(log.SerializeToString())
    return path


def encoder_contract(encoder) -> dict:
    """The encoder's class and arguments (its `get_config()` less name and trainable): the
    same keys as before for a `WaveformEncoder` (first_filters, ...), and any other encoder's
    own (a `StudentEncoder`'s front_end, block_filters, ...)."""
    config = {key: value for key, value in encoder.get_config().items() if key not in ("name", "trainable")}
    return {"class": type(encoder).__name__, **config}


def masked_signature_spec() -> dict:
    """The "masked_signature" entry of a SavedModel's contract."""
    return {
        "name": MASKED_SIGNATURE_KEY,
        "inputs": {
            INPUT_NAME: {"dtype": "float32", "shape": ["batch", "samples"]},
            NUM_VALID_NAME: {"dtype": "int32", "shape": ["batch"]},
        },
        "batch_rule": f"rows zero-padded past {NUM_VALID_NAME} (each at least min_samples); "
        "each row is scored as if it were alone",
    }


def contract(model, quantization: str | None = None, source: str | None = None) -> dict:
    """What a caller needs to know to use an exported model (written as JSON beside it)."""
    import keras
    import tensorflow as tf

    encoder = model.encoder
    targets = model_targets(model)
    if targets == (MOS_OUTPUT,):
        scores = {MOS_OUTPUT: {"dtype": "float32", "shape": ["batch"], "range": list(model.mos_range)}}
    else:
        scores = {
            target: {"dtype": "float32", "shape": ["batch"], "range": list(scale)}
            for target, scale in zip(targets, model.target_ranges, strict=True)
        }
    return {
        "format": "tflite" if quantization else "saved_model",
        "quantization": quantization or "float32",
        "signature": SIGNATURE_KEY,
        "input": input_spec(),
        **({} if targets == (MOS_OUTPUT,) else {"targets": list(targets)}),
        "outputs": {
            **scores,
            EMBEDDING_OUTPUT: {"dtype": "float32", "shape": ["batch", int(model.embedding_width)]},
        },
        **({} if quantization else {"masked_signature": masked_signature_spec()}),
        "encoder": encoder_contract(encoder),
        "num_parameters": int(model.count_params()),
        "versions": {
            "jsqa_tf": jsqa_tf.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "source": source,
        **provenance.contract_entry(source),
        **({INT8_CHUNKS_KEY: int8_chunks(model)} if quantization == "int8" else {}),
    }


def int8_chunks(model) -> dict:
    """The int8 contract's record of which convolutions `convert_tflite` runs in chunks
    (`jsqa_tf.quantization.ChunkedRegressor.contract_entry`)."""
    from jsqa_tf.quantization import chunked_copy

    return chunked_copy(model).contract_entry()


# --- TFLite ------------------------------------------------------------------------------------


def convert_tflite(
    saved_model_dir: str | os.PathLike,
    quantization: str = "float32",
    representative_data: Callable[[], Iterable[np.ndarray]] | None = None,
    model=None,
    bias_correction: bool = True,
) -> bytes:
    """Converts the exported SavedModel to TFLite (builtin ops only: runs in LiteRT anywhere).

    Args:
        saved_model_dir: a folder written by `save_serving_model`.
        quantization: one of `QUANTIZATIONS`.
        representative_data: for "int8-full": returns an iterable of float32 [1, samples]
            waveforms to calibrate the activation ranges on.
        model: the model `saved_model_dir` was written from. For "int8" (dynamic range) the
            converter then reads a SavedModel of `jsqa_tf.quantization.chunked_copy(model)`
            (written to a temporary folder): the same function, with the input of each
            convolution that `jsqa_tf.quantization.chunk_plan` picks (every one whose kernel
            is quantized) quantized per time chunk instead of per clip, which keeps a loud moment of a
            clip from coarsening the rest (docs/design.md). The contract records the choice
            (`int8_chunks`). Without it, "int8" is converted from `saved_model_dir` as it is.
        bias_correction: for "int8" with `model`: the copy's convolutions take the biases that
            keep their mean outputs with int8 weights (`jsqa_tf.quantization.bias_corrections`);
            False only to measure what they do.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
    if quantization == "int8" and model is not None:
        from jsqa_tf.quantization import chunked_copy

        with tempfile.TemporaryDirectory(prefix="jsqa-int8-") as folder:
            chunked_dir = os.path.join(folder, "saved_model")
            copy = chunked_copy(model, bias_correction=bias_correction)
            save_serving_model(copy, chunked_dir, masked=False)
            return _convert(chunked_dir, quantization, representative_data)
    return _convert(os.fspath(saved_model_dir), quantization, representative_data)


def _convert(saved_model_dir: str, quantization: str, representative_data) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(saved_model_dir), [SIGNATURE_KEY])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8-full":
        if representative_data is None:
            raise ValueError("int8-full needs representative_data")
        converter.representative_dataset = lambda: ([clip] for clip in representative_data())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def shard_clips(shards_dir: str | os.PathLike, num_clips: int = 64, seconds: float = 4.0, seed: int = 0):
    """Representative data for int8-full: random crops from prepared training shards."""
    from jsqa_tf.data.pipeline import make_dataset

    def clips():
        dataset = make_dataset(
            shards_dir, "train", crop_samples=int(seconds * SAMPLE_RATE), batch_size=1, seed=seed
        )
        for batch in dataset.take(num_clips):
            yield batch["audio"].numpy().astype(np.float32)

    return clips


def check_tflite_size(path: str, model, quantization: str) -> int:
    """Catches the empty-model trap: a file far smaller than its weights. Returns the size."""
    size = os.path.getsize(path)
    expected = _weights_bytes(model) // 4 * WEIGHT_BYTES[quantization]
    if size < 0.8 * expected:
        raise ModelError(
            path,
            f"{size} bytes for {expected} bytes of {quantization} weights: the conversion lost the model",
        )
    return size


# --- one check for every form ----------------------------------------------------------------------


def example_clips(seconds: Sequence[float] = PARITY_SECONDS, seed: int = 0) -> list[np.ndarray]:
    """Speech-like clips (synthetic syllables + noise at varied SNRs), float32 16 kHz."""
    from jsqa_tf.data.demo import synth_speech

    rng = np.random.default_rng(seed)
    clips = []
    for index, length in enumerate(seconds):
        speech = synth_speech(rng, max(length, 0.7), f0_hz=rng.uniform(100, 220))[: int(length * SAMPLE_RATE)]
        snr_db = (30.0, 5.0, 15.0, 0.0)[index % 4]
        noise = rng.standard_normal(len(speech)) * np.std(speech) * 10 ** (-snr_db / 20)
        clip = speech + noise
        clips.append((0.5 * clip / max(np.max(np.abs(clip)), 1e-9)).astype(np.float32))
    return clips


@dataclasses.dataclass
class ParityReport:
    """Max |MOS - reference| per form and clip length (seconds), and the tolerances applied.
    Of a multi-target model, each figure is the largest over its targets, `per_target` holds
    each target's largest per form, and `reference_mos` each clip's scores in target order."""

    max_abs_diff_mos: dict[str, float]
    per_length: dict[str, dict[str, float]]
    reference_mos: dict[str, float | list[float]]
    per_target: dict[str, list[float]] | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_parity(
    reference: Callable[[np.ndarray], np.ndarray],
    candidates: dict[str, Callable[[np.ndarray], np.ndarray]],
    clips: Sequence[np.ndarray] | None = None,
    tolerances: dict[str, float] | None = None,
) -> ParityReport:
    """Scores each clip (as a batch of one) with the reference and every candidate.

    Args:
        reference: float32 [1, samples] -> MOS [1] (the Keras model).
        candidates: name -> the same function for an exported form; each must give a finite MOS
            within its tolerance of the reference.
        clips: 1-D waveforms (default: `example_clips()`, 0.25 s to 10 s).
        tolerances: name -> max |diff| (default `MOS_TOLERANCE[name]`; None, or a name without
            one, is only checked for finite output).

    Raises:
        ModelError: a NaN/Inf score, or a difference above tolerance.
    """
    clips = example_clips() if clips is None else clips
    tolerances = {**MOS_TOLERANCE, **(tolerances or {})}
    # [1] (a MOS) or [1, targets]: one row of scores per clip
    reference_scores = {
        f"{len(c) / SAMPLE_RATE:g}": np.asarray(reference(c[None]), dtype=np.float64).reshape(-1)
        for c in clips
    }
    if not all(np.all(np.isfinite(scores)) for scores in reference_scores.values()):
        raise ModelError("keras", f"the model itself gives a non-finite MOS: {reference_scores}")
    width = len(next(iter(reference_scores.values())))
    per_length, worst, per_target = {}, {}, {}
    for name, score in candidates.items():
        diffs, target_worst = {}, np.zeros(width)
        for clip in clips:
            key = f"{len(clip) / SAMPLE_RATE:g}"
            mos = np.asarray(score(clip[None]), dtype=np.float64).reshape(-1)
            if mos.shape != (width,) or not np.all(np.isfinite(mos)):
                expected = "one finite MOS" if width == 1 else f"{width} finite scores"
                raise ModelError(name, f"gives {mos} for a {key} s clip (expected {expected})")
            difference = np.abs(mos - reference_scores[key])
            target_worst = np.maximum(target_worst, difference)
            diffs[key] = float(difference.max())
        per_length[name] = diffs
        per_target[name] = [float(value) for value in target_worst]
        worst[name] = max(diffs.values())
        limit = tolerances.get(name)
        if limit is not None and worst[name] > limit:
            raise ModelError(
                name, f"MOS differs from the Keras model by {worst[name]:.3g} (tolerance {limit:g}): {diffs}"
            )
    if width == 1:
        return ParityReport(
            worst, per_length, {key: float(value[0]) for key, value in reference_scores.items()}
        )
    reference_mos = {key: [float(v) for v in value] for key, value in reference_scores.items()}
    return ParityReport(worst, per_length, reference_mos, per_target)


def keras_scorer(model) -> Callable[[np.ndarray], np.ndarray]:
    return lambda waveform: np.asarray(model(waveform, training=False))


def serving_scorer(
    saved_model_dir: str,
    model_name: str = "model",
    masked: bool = False,
    targets: Sequence[str] = (MOS_OUTPUT,),
):
    """What TF Serving does, in process: the v1 loader (restore + init ops of the `serve` tag),
    the `serving_default` signature fed from a `PredictRequest` that went through its wire
    format, and a `PredictResponse` parsed back from bytes. Returns (scorer, close); the
    scorer gives the MOS [batch], or of several `targets` their outputs [batch, targets].

    With `masked`, the scorer goes through `serving_masked` instead: each clip is zero-padded
    to the next whole second and batched with a loud noise row one second longer, so that a
    padding or a neighbour that leaked into a row's score would show as a difference."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    tf_logger, level = tf.get_logger(), tf.get_logger().level
    tf_logger.setLevel(logging.ERROR)  # the v1 loader's deprecation notice is not for the user
    with graph.as_default():
        try:
            meta_graph = tf.compat.v1.saved_model.loader.load(session, [SERVING_TAG], saved_model_dir)
        except Exception as error:  # the v1 loader raises many error types for a bad SavedModel
            session.close()
            raise ModelError(saved_model_dir, f"the v1 (TF Serving) loader fails: {error}")
        finally:
            tf_logger.setLevel(level)
    key = MASKED_SIGNATURE_KEY if masked else SIGNATURE_KEY
    signature = meta_graph.signature_def.get(key)
    if signature is None or signature.method_name != PREDICT_METHOD:
        session.close()
        raise ModelError(saved_model_dir, f"no {key} signature with method {PREDICT_METHOD}")
    fetches = {name: info.name for name, info in signature.outputs.items()}

    def score(waveform: np.ndarray) -> np.ndarray:
        lengths = None
        if masked:
            waveform, lengths = _padded_beside_noise(np.asarray(waveform, dtype=np.float32))
        wire = predict_request(waveform, model_name, lengths).SerializeToString()
        request = predict_pb2.PredictRequest.FromString(wire)
        feed = {
            signature.inputs[name].name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()
        }
        outputs = session.run(fetches, feed)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        response = predict_pb2.PredictResponse.FromString(response.SerializeToString())
        scores = stack_scores({name: tf.make_ndarray(response.outputs[name]) for name in targets}, targets)
        return scores[: len(scores) - 1] if masked else scores

    return score, session.close


def _padded_beside_noise(waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[rows, n] -> the rows zero-padded to the next whole second, plus a last row of loud
    noise one second longer than that; and each row's valid length."""
    rows, samples = waveform.shape
    width = -(-samples // SAMPLE_RATE) * SAMPLE_RATE
    batch = np.zeros((rows + 1, width + SAMPLE_RATE), np.float32)
    batch[:rows, :samples] = waveform
    batch[rows] = np.random.default_rng(0).uniform(-0.9, 0.9, width + SAMPLE_RATE)
    return batch, np.array([samples] * rows + [width + SAMPLE_RATE], np.int32)


def tflite_scorer(path: str, num_threads: int = 2, targets: Sequence[str] | None = None):
    """`LiteModel.score` of a `.tflite` file; `targets` the model's outputs when no contract
    lies beside the file yet (an export's test run)."""
    model = LiteModel(path, num_threads=num_threads)
    if targets is not None:
        model.targets = tuple(targets)
    return model.score


# --- the whole export ------------------------------------------------------------------------------


def export_model(
    model_path: str | os.PathLike,
    name: str,
    output_dir: str | os.PathLike = "saved_models",
    *,
    tflite: Sequence[str] = (),
    representative_data_dir: str | os.PathLike | None = None,
    check: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> dict:
    """Exports a trained model: `output_dir/name/<version>/` (+ TFLite files under
    `output_dir/name/tflite/<version>/`).

    Everything is written in a temporary dot-folder beside the versions: the SavedModel (with
    `assets.extra/tf_serving_warmup_requests` and the contract JSON), each TFLite file
    converted from it, size-checked and test-run, and with `check` the parity check of all of
    them. Only then is the SavedModel renamed to the next version and the TFLite files moved
    beside it with their contract JSONs; so TF Serving never sees a half or unchecked version,
    and a killed export leaves only the dot-folder, which the next export removes.

    Args:
        model_path: a `.keras` file or a fine-tuning / `train` run folder.
        name: the model's name (TF Serving's `--model_name`); letters, digits, `-`, `_`, `.`.
        output_dir: parent of the base path.
        tflite: quantizations to convert to (see `QUANTIZATIONS`).
        representative_data_dir: prepared shards (with a `train` split) for "int8-full".
        check: also run `check_parity` on the Keras model, the SavedModel through the v1
            loader and a PredictRequest, and every TFLite model.
        on_step: called with a short description as each step starts (progress).

    Returns:
        a summary: version, paths, sizes, parity report if checked.
    """
    from jsqa_tf.models.saving import find_model_file, load_mos_regressor

    step = on_step or (lambda text: logger.info("%s", text))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ModelError(name, "not a valid model name (letters, digits, '-', '_', '.'; no '/')")
    unknown = [q for q in tflite if q not in QUANTIZATIONS]
    if unknown:
        raise ModelError(",".join(unknown), f"unknown TFLite quantization; one of {', '.join(QUANTIZATIONS)}")
    if "int8-full" in tflite and representative_data_dir is None:
        raise ModelError("int8-full", "needs --representative-data (prepared training shards)")
    if representative_data_dir is not None:
        manifest = os.path.join(os.fspath(representative_data_dir), "manifest.json")
        if not os.path.isfile(manifest):
            raise ModelError(representative_data_dir, "not a prepared folder (no manifest.json)")

    source = find_model_file(model_path)
    step(f"loading {source}")
    model = load_mos_regressor(source)
    base_path = os.path.abspath(os.path.join(os.fspath(output_dir), name))

    with _incomplete_folder(base_path) as work_dir:
        step("writing the SavedModel")
        saved_model_dir = os.path.join(work_dir, "saved_model")
        sizes = save_serving_model(model, saved_model_dir)
        write_warmup_requests(saved_model_dir, name)
        write_json(saved_model_contract_path(saved_model_dir), contract(model, source=source))

        converted = {}
        for quantization in tflite:
            step(f"converting to TFLite {quantization}")
            representative = shard_clips(representative_data_dir) if quantization == "int8-full" else None
            path = os.path.join(work_dir, f"{name}-{quantization}.tflite")
            with open(path, "wb") as stream:
                stream.write(convert_tflite(saved_model_dir, quantization, representative, model))
            check_tflite_size(path, model, quantization)
            # A test run on the minimum length catches a model that outputs NaN (tolerances are
            # --check's: a quantization error is a property of the weights, not a breakage).
            short, finite_only = example_clips((MIN_SECONDS,)), {quantization: None}
            scorer = tflite_scorer(path, targets=model_targets(model))
            check_parity(keras_scorer(model), {quantization: scorer}, short, finite_only)
            converted[quantization] = path

        parity = None
        if check:
            step("checking: the SavedModel through the v1 loader and a PredictRequest, TFLite parity")
            parity = check_exported(model, saved_model_dir, converted, name).as_dict()

        # Everything is written and checked: only now does a version appear.
        version, version_dir = _publish(saved_model_dir, base_path)
        summary = {"name": name, "version": version, "base_path": base_path, "saved_model": version_dir}
        summary |= sizes | {"tflite": {}}
        folder = os.path.join(base_path, TFLITE_DIR, str(version))
        for quantization, temp_path in converted.items():
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, os.path.basename(temp_path))
            size = os.path.getsize(temp_path)
            info = contract(model, quantization, source) | {"saved_model": version_dir, "size_bytes": size}
            if parity:
                info["max_abs_diff_mos"] = parity["max_abs_diff_mos"][quantization]
                if parity.get("per_target"):
                    targets = model_targets(model)
                    info["max_abs_diff"] = dict(zip(targets, parity["per_target"][quantization], strict=True))
            os.replace(temp_path, path)
            write_json(tflite_contract_path(path), info)
            summary["tflite"][quantization] = {"path": path, "size_bytes": size}
    if parity:
        summary["parity"] = parity
    return summary


def check_exported(
    model, saved_model_dir: str, tflite_paths: dict[str, str], name: str = "model"
) -> ParityReport:
    """The serving check and the TFLite parity check, against the Keras model, in one pass."""
    targets = model_targets(model)
    serve, close = serving_scorer(saved_model_dir, name, targets=targets)
    serve_masked, close_masked = serving_scorer(saved_model_dir, name, masked=True, targets=targets)
    try:
        candidates = {"saved_model": serve, "saved_model_masked": serve_masked}
        candidates |= {
            quantization: tflite_scorer(path, targets=targets) for quantization, path in tflite_paths.items()
        }
        return check_parity(keras_scorer(model), candidates)
    finally:
        close()
        close_masked()
