"""jsqa-tf: JSQA speech quality assessment in Keras 3 / TensorFlow."""

__version__ = "0.1.0"


def load_model(path, *, compile: bool = False, safe_mode: bool = True):
    """Loads a `.keras` file that jsqa-tf wrote (an encoder, a MOS model, a pretrainer).

    `keras.saving.load_model` alone knows jsqa-tf's layers only once `jsqa_tf.models` is
    imported (that import registers them); this does both. `import jsqa_tf` itself stays
    light: it imports neither TensorFlow nor Keras.
    """
    import keras

    import jsqa_tf.models  # noqa: F401 (registers WaveformEncoder, MOSRegressor, ...)

    return keras.saving.load_model(path, compile=compile, safe_mode=safe_mode)
