"""On-device MOS prediction with a TFLite model and LiteRT: what an app backend or an embedded
Linux device runs. Imports neither TensorFlow nor Keras (NumPy, soundfile, soxr, ai-edge-litert).

```python
from jsqa_tf.lite import LiteModel

model = LiteModel("saved_models/jsqa/tflite/1/jsqa-int8.tflite", num_threads=2)
model.score_file("call.wav")  # {"mos": 3.4, "seconds": 12.0, "window_mos": [...], ...}
model.score(waveforms)        # float32 [batch, samples], 16 kHz mono, same length -> MOS [batch]
```

The input contract is `jsqa_tf.export`'s (read from the JSON beside the `.tflite` file when
there is one): 16 kHz mono float32 in [-1, 1], at least `min_samples`; a file longer than the
window is scored in windows of exactly the window length (`jsqa_tf.windows`) and averaged.
"""

from __future__ import annotations

import json
import os

import numpy as np

from jsqa_tf.audio import SAMPLE_RATE, read_audio
from jsqa_tf.errors import AudioError, ModelError
from jsqa_tf.export import INPUT_NAME, MIN_SAMPLES, SIGNATURE_KEY
from jsqa_tf.windows import split_windows, window_starts

DEFAULT_WINDOW_SECONDS = 10.0


def read_contract(tflite_path: str | os.PathLike) -> dict:
    """The contract JSON beside a `.tflite` file ({} when there is none)."""
    path = os.path.splitext(os.fspath(tflite_path))[0] + ".json"
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, ValueError) as error:
        raise ModelError(path, f"unreadable contract JSON ({error})")


class LiteModel:
    """A jsqa-tf TFLite model in LiteRT's interpreter.

    Args:
        path: the `.tflite` file written by `jsqa-tf export --tflite ...`.
        num_threads: CPU threads of the interpreter.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        self.path = os.fspath(path)
        self.num_threads = num_threads
        if not os.path.isfile(self.path):
            raise ModelError(self.path, "model not found")
        self.contract = read_contract(self.path)
        self.min_samples = int(self.contract.get("input", {}).get("min_samples", MIN_SAMPLES))
        try:
            self._interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
            self._runner = self._interpreter.get_signature_runner(SIGNATURE_KEY)
        except (ValueError, RuntimeError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelError(self.path, f"not a usable TFLite model ({reason})")

    def outputs(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """{"mos": [batch], "embedding": [batch, d]} for float32 [batch, samples] (equal lengths)."""
        waveform = np.ascontiguousarray(waveform, dtype=np.float32)
        if waveform.ndim != 2:
            raise ValueError(f"waveform must be [batch, samples], got shape {waveform.shape}")
        return self._runner(**{INPUT_NAME: waveform})

    def score(self, waveform: np.ndarray) -> np.ndarray:
        """MOS float32 [batch] of a float32 [batch, samples] batch of equal-length clips."""
        return np.asarray(self.outputs(waveform)["mos"], dtype=np.float32).reshape(-1)

    def score_audio(
        self, audio: np.ndarray, window_seconds: float = DEFAULT_WINDOW_SECONDS, batch_size: int = 8
    ) -> dict:
        """Scores 16 kHz mono audio: windows of `window_seconds` (the whole clip when shorter),
        `batch_size` windows at a time; the MOS is the mean of the windows'."""
        window_samples = int(round(window_seconds * SAMPLE_RATE))
        windows = split_windows(audio, window_samples)
        scores = [
            self.score(np.stack(windows[start : start + batch_size]))
            for start in range(0, len(windows), batch_size)
        ]
        window_mos = np.concatenate(scores)
        return {
            "mos": float(np.mean(window_mos)),
            "seconds": len(audio) / SAMPLE_RATE,
            "num_windows": len(windows),
            "window_mos": [float(m) for m in window_mos],
            "window_start_seconds": [s / SAMPLE_RATE for s in window_starts(len(audio), window_samples)],
        }

    def score_file(self, path: str | os.PathLike, window_seconds: float = DEFAULT_WINDOW_SECONDS) -> dict:
        """Reads any file `jsqa_tf.audio.read_audio` takes (any rate, channels, WAV/FLAC/OGG),
        then `score_audio`. Raises `AudioError` for an unusable or too short file."""
        audio = read_audio(path)
        if len(audio) < self.min_samples:
            raise AudioError(path, too_short_reason(len(audio), self.min_samples))
        return self.score_audio(audio, window_seconds)


def too_short_reason(num_samples: int, min_samples: int) -> str:
    return (
        f"too short: {num_samples / SAMPLE_RATE:.3f} s, "
        f"the model needs at least {min_samples / SAMPLE_RATE:g} s"
    )
