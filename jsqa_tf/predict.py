"""`jsqa-tf predict`'s backends that need TensorFlow, and `open_backend` choosing among all.

The TFLite backend, the inputs, the scoring loop and the result rows are the runtime's
(`jsqa_lite.predict`): with a TFLite model nothing imports TensorFlow (only the Keras and
SavedModel backends do, when they are opened).
"""

from __future__ import annotations

import os

import numpy as np

from jsqa_lite.contract import (
    INPUT_NAME,
    MASKED_SIGNATURE_KEY,
    MIN_SAMPLES,
    NUM_VALID_NAME,
    PROVENANCE_KEY,
    SAMPLE_RATE,
    SIGNATURE_KEY,
    min_samples,
    output_targets,
    read_contract,
    saved_model_contract_path,
    warn_if_demo,
)
from jsqa_lite.errors import ModelError
from jsqa_lite.predict import TFLiteBackend
from jsqa_lite.scoring import stack_scores
from jsqa_tf import provenance
from jsqa_tf.export import list_versions
from jsqa_tf.ranges import model_targets


class KerasBackend:
    """A `.keras` file or a run folder, run by Keras (TensorFlow).

    The model masks zero padding (its dict input), so clips of any length share batches of
    `batch_size` rows padded to whole seconds (`jsqa_lite.scoring`, `masks_padding`): the
    model sees at most one shape per second of the window. TensorFlow's oneDNN kernels keep
    a primitive per input shape (~3.7 MB each), so scoring each length as it comes grew with
    every distinct file length.
    """

    kind = "keras"
    masks_padding = True
    bucket_samples = SAMPLE_RATE

    def __init__(self, path: str):
        import tensorflow as tf

        from jsqa_tf.models.saving import find_model_file, load_mos_regressor

        self.path = find_model_file(path)
        self.min_samples = MIN_SAMPLES
        warn_if_demo(provenance.read_keras(self.path), self.path)
        model = load_mos_regressor(self.path)
        self.targets = model_targets(model)
        self._score = tf.function(
            lambda waveform, num_valid_samples: model(
                {"waveform": waveform, "num_valid_samples": num_valid_samples}, training=False
            ),
            input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32)],
        )

    def score(self, batch: np.ndarray, num_valid_samples: np.ndarray | None = None) -> np.ndarray:
        """MOS of a batch ([batch, targets] of a multi-target model); `num_valid_samples`
        (default: every sample) masks zero padding."""
        batch = np.asarray(batch, dtype=np.float32)
        if num_valid_samples is None:
            num_valid_samples = np.full(len(batch), batch.shape[1], np.int32)
        return self._score(batch, np.asarray(num_valid_samples, dtype=np.int32)).numpy()


class SavedModelBackend:
    """One version folder of an export (`saved_models/NAME/<version>`).

    An export with the `serving_masked` signature is scored like the Keras backend: files of
    any length share zero-padded batches of whole seconds, the padding masked (TensorFlow's
    per-shape kernels would otherwise grow the process with every distinct file length). An
    export without it (written before the signature existed) is scored through
    `serving_default`, one length per batch.
    """

    kind = "saved_model"

    def __init__(self, path: str):
        import tensorflow as tf

        self.path = path
        contract = read_contract(saved_model_contract_path(path))
        self.min_samples = min_samples(contract)
        self.targets = output_targets(contract)
        warn_if_demo(contract.get(PROVENANCE_KEY), path)
        try:
            self._loaded = tf.saved_model.load(path)  # keep it: the signature needs its variables
            self._signature = self._loaded.signatures[SIGNATURE_KEY]
            self._masked = self._loaded.signatures.get(MASKED_SIGNATURE_KEY)
        except Exception as error:  # corrupt protos, missing variables: many error types
            raise ModelError(path, f"cannot load the SavedModel ({type(error).__name__}: {error})")
        self.masks_padding = self._masked is not None
        self.bucket_samples = SAMPLE_RATE if self.masks_padding else 1

    def score(self, batch: np.ndarray, num_valid_samples: np.ndarray | None = None) -> np.ndarray:
        """MOS of a batch ([batch, targets] of a multi-target model); `num_valid_samples` (only
        with `masks_padding`) masks zero padding."""
        import tensorflow as tf

        waveform = tf.constant(batch, dtype=tf.float32)
        if num_valid_samples is None:
            outputs = self._signature(**{INPUT_NAME: waveform})
        else:
            lengths = tf.constant(num_valid_samples, dtype=tf.int32)
            outputs = self._masked(**{INPUT_NAME: waveform, NUM_VALID_NAME: lengths})
        return stack_scores({name: value.numpy() for name, value in outputs.items()}, self.targets)


def open_backend(model_path: str | os.PathLike, num_threads: int = 2):
    """The backend for what `--model` names.

    `FILE.tflite` -> TFLite; a SavedModel folder (`saved_model.pb`) -> SavedModel; a TF Serving
    base path (integer version folders) -> its latest version; a `.keras` file or a run folder
    -> Keras. Raises `ModelError` for anything else.
    """
    path = os.path.abspath(os.fspath(model_path))
    if not os.path.exists(path):
        raise ModelError(path, "model not found")
    if os.path.isfile(path) and path.endswith(".tflite"):
        return TFLiteBackend(path, num_threads)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return SavedModelBackend(path)
        versions = list_versions(path)
        if versions:
            return SavedModelBackend(os.path.join(path, str(versions[-1])))
        if any(name.isdigit() for name in os.listdir(path)):
            raise ModelError(path, "its version folders hold no saved_model.pb (an incomplete export?)")
    if os.path.isdir(path) or path.endswith(".keras"):
        return KerasBackend(path)  # ModelError when the folder is not a run folder
    raise ModelError(
        path, "not a .tflite or .keras file, a SavedModel, a TF Serving base path or a run folder"
    )
