"""Finding and loading a trained `MOSRegressor`: a `.keras` file or a run folder."""

from __future__ import annotations

import os
import zipfile

from jsqa_tf.errors import ModelError

MODEL_FILE = "model.keras"  # the best epoch (lowest validation RMSE) of a fine-tuning run
LAST_MODEL_FILE = "model-last.keras"  # its last epoch
# Where a model lies inside a run folder: fine-tuning's own, or a `jsqa-tf train` run's stage.
_RUN_LAYOUTS = (MODEL_FILE, os.path.join("finetune", MODEL_FILE))


def find_model_file(path: str | os.PathLike) -> str:
    """The `.keras` file a user means: the file itself, or the model of a run folder.

    Raises:
        ModelError: nothing loadable there (the message says what was looked for).
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        for relative in _RUN_LAYOUTS:
            candidate = os.path.join(path, relative)
            if os.path.isfile(candidate):
                return candidate
        raise ModelError(
            path,
            f"no trained model here (looked for {' and '.join(_RUN_LAYOUTS)}); is the run finished?",
        )
    if not os.path.exists(path):
        raise ModelError(path, "model not found")
    if not path.endswith(".keras"):
        raise ModelError(path, "not a .keras file or a run folder")
    return path


def register_classes() -> None:
    """Makes every Keras class of jsqa-tf known to `keras.saving` (importing the modules that
    define them registers them), so that a file holding another kind of model than the one
    asked for loads and is named in the error, instead of failing on an unknown class."""
    from jsqa_tf.models import (  # noqa: F401
        contrastive_pretrainer,
        mos_head,
        mos_regressor,
        projection_head,
        student_encoder,
        waveform_encoder,
    )


def load_keras_file(path: str | os.PathLike, expected: type, what: str):
    """Loads a `.keras` file holding an `expected` model (safe mode: no code runs).

    Raises:
        ModelError: missing, corrupt, or another kind of model (`what` names the kind wanted).
    """
    import keras

    register_classes()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelError(path, "model not found")
    if not zipfile.is_zipfile(path):
        raise ModelError(path, "not a Keras model file (not a zip archive; truncated or corrupt?)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, OSError, KeyError... for bad files
        raise ModelError(path, f"cannot be loaded ({type(error).__name__}: {error})")
    if not isinstance(model, expected):
        raise ModelError(path, f"holds a {type(model).__name__}, not a {expected.__name__} ({what})")
    return model


def load_mos_regressor(path: str | os.PathLike):
    """Loads a `MOSRegressor` from a `.keras` file or a run folder (safe mode: no code runs).

    Raises:
        ModelError: missing, corrupt, or not a MOS model.
    """
    from jsqa_tf.models.mos_regressor import MOSRegressor

    return load_keras_file(find_model_file(path), MOSRegressor, "a MOS model")
