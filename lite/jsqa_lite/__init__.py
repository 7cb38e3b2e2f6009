"""jsqa-lite: the on-device runtime of jsqa-tf (LiteRT, no TensorFlow).

Reads audio (any rate, channels, WAV/FLAC/OGG), cuts it into the model's windows and scores it
with a `.tflite` model that `jsqa-tf export --tflite ...` wrote:

```python
from jsqa_lite import LiteModel

model = LiteModel("jsqa-int8.tflite", num_threads=2)
model.score_file("call.wav")  # {"mos": 3.4, "seconds": 12.0, "window_mos": [...], ...}
```

or, from a shell, `jsqa-lite predict FILES... --model jsqa-int8.tflite`. Its dependencies are
NumPy, soundfile, soxr, ai-edge-litert and click.
"""

__version__ = "0.1.0"
"""Always the version of the jsqa-tf it belongs to (a test checks it)."""

__all__ = ["LiteModel", "__version__"]


def __getattr__(name: str):
    # `LiteModel` is imported when first asked for: importing the package (as `jsqa_tf.errors`
    # and the CLIs do) stays free of NumPy, soundfile and soxr.
    if name == "LiteModel":
        from jsqa_lite.lite_model import LiteModel

        return LiteModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
