"""On-device MOS prediction with a TFLite model and LiteRT: what an app backend or an embedded
Linux device runs. Imports neither TensorFlow nor Keras (NumPy, soundfile, soxr, ai-edge-litert).

```python
from jsqa_lite import LiteModel

model = LiteModel("saved_models/jsqa/tflite/1/jsqa-int8.tflite", num_threads=2)
model.score_file("call.wav")  # {"mos": 3.4, "seconds": 12.0, "window_mos": [...], ...}
model.score(waveforms)        # float32 [batch, samples], 16 kHz mono, same length -> MOS [batch]
```

A model trained on NISQA's quality dimensions (its contract's "targets", e.g. mos, noi, col,
dis, loud) returns them all: `score` gives [batch, targets] in `model.targets` order, and
`score_file` a dict with a key per target ({"mos": 3.4, "noi": 2.1, ..., "scores": {...}}).

The input contract is `jsqa_lite.contract`'s (the minimum length read from the JSON beside the
`.tflite` file when there is one): 16 kHz mono float32 in [-1, 1]; a file longer than the
window is scored in windows of exactly the window length and averaged.
"""

from __future__ import annotations

import os

import numpy as np

from jsqa_lite.audio import read_model_input
from jsqa_lite.contract import (
    DEFAULT_WINDOW_SECONDS,
    INPUT_NAME,
    PROVENANCE_KEY,
    SIGNATURE_KEY,
    min_samples,
    output_targets,
    read_contract,
    tflite_contract_path,
    to_samples,
    warn_if_demo,
)
from jsqa_lite.errors import ModelError
from jsqa_lite.scoring import score_files, stack_scores, target_summary


class LiteModel:
    """A jsqa-tf TFLite model in LiteRT's interpreter.

    A model that learned from the synthetic demo corpus (its contract says so) logs one
    warning when it is opened: its scores are not quality judgements of real speech.

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
        self.contract = read_contract(tflite_contract_path(self.path))
        self.min_samples = min_samples(self.contract)
        try:
            self._interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
            self._runner = self._interpreter.get_signature_runner(SIGNATURE_KEY)
        except (ValueError, RuntimeError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelError(self.path, f"not a usable TFLite model ({reason})")
        self.targets = output_targets(self.contract)
        """The score outputs, in order: ("mos",), or a multi-target model's targets."""
        self.provenance = self.contract.get(PROVENANCE_KEY)
        """What the model learned from (the contract's record; None when unknown)."""
        warn_if_demo(self.provenance, self.path)

    def outputs(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """{"mos": [batch], "embedding": [batch, d]} for float32 [batch, samples] (equal lengths)."""
        waveform = np.ascontiguousarray(waveform, dtype=np.float32)
        if waveform.ndim != 2:
            raise ValueError(f"waveform must be [batch, samples], got shape {waveform.shape}")
        return self._runner(**{INPUT_NAME: waveform})

    def score(self, waveform: np.ndarray) -> np.ndarray:
        """MOS float32 [batch] of a float32 [batch, samples] batch of equal-length clips; of
        a multi-target model, float32 [batch, targets] in `targets` order."""
        return stack_scores(self.outputs(waveform), self.targets)

    def score_audio(
        self, audio: np.ndarray, window_seconds: float = DEFAULT_WINDOW_SECONDS, batch_size: int = 8
    ) -> dict:
        """Scores 16 kHz mono audio: windows of `window_seconds` (the whole clip when shorter),
        `batch_size` windows at a time; the MOS is the mean of the windows'.

        Returns:
            {"mos", "seconds", "num_windows", "window_mos", "window_start_seconds"}; of a
            multi-target model a key per target too (`jsqa_lite.scoring.target_summary`).

        Raises:
            ModelError: the interpreter failed, or gave a non-finite MOS.
        """
        (result,) = score_files(
            [(None, audio)],
            lambda batch, _: self.score(batch),
            window_samples=to_samples(window_seconds),
            masks_padding=False,
            batch_size=batch_size,
        )
        if not result.ok:
            raise ModelError(self.path, result.error)
        return target_summary(result, self.targets)

    def score_file(self, path: str | os.PathLike, window_seconds: float = DEFAULT_WINDOW_SECONDS) -> dict:
        """Reads any file `jsqa_lite.audio.read_audio` takes (any rate, channels, WAV/FLAC/OGG),
        then `score_audio`. Raises `AudioError` for an unusable or too short file."""
        return self.score_audio(read_model_input(path, self.min_samples), window_seconds)
