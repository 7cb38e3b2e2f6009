"""Untrained models with realistic activations and outputs ("calibrated"), for measuring the
exported forms of a model that has not been trained (keras and NumPy only).

The error of a quantized export and its speed depend on the range of a model's activations and
outputs, not on what it has learned. A freshly built model is a poor stand-in: its BatchNorm
layers hold their initial statistics (mean 0, variance 1), far from what audio gives, and its
MOS head either saturates the sigmoid or sits in its middle. `calibrate` keeps the random
convolutions, sets every BatchNorm layer's moving statistics to those of a batch of audio, and
fits the head (the encoder untouched) to target scores on the clips' embeddings. The result is
not a quality model: training the encoder takes far longer, and a calibrated head is steeper
than a trained one.
"""

from __future__ import annotations

import keras
import numpy as np


def _batch_norms(layer) -> list:
    """Every BatchNormalization layer inside `layer` (nested models and layers included)."""
    found = []
    for sublayer in getattr(layer, "layers", None) or getattr(layer, "_layers", []):
        if isinstance(sublayer, keras.layers.BatchNormalization):
            found.append(sublayer)
        else:
            found += _batch_norms(sublayer)
    return found


def set_batch_norm_statistics(encoder, clips: np.ndarray) -> int:
    """Sets the moving mean and variance of every BatchNorm layer of `encoder` to those of one
    batch, `clips` (float32 [batch, samples]); returns the number of layers set."""
    layers = _batch_norms(encoder)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0  # the moving statistics become this batch's
    try:
        encoder(np.asarray(clips, dtype=np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return len(layers)


def calibrate(
    model,
    clips: np.ndarray,
    targets: np.ndarray,
    *,
    batch_norm_clips: np.ndarray | None = None,
    epochs: int = 300,
    learning_rate: float = 3e-3,
    batch_size: int = 16,
    embed_batch_size: int = 8,
) -> np.ndarray:
    """Calibrates an untrained `MOSRegressor` in place (see the module's docstring).

    Args:
        model: the `MOSRegressor`.
        clips: float32 [n, samples]: the audio the head is fitted on.
        targets: [n] the MOS each clip should get.
        batch_norm_clips: the batch whose statistics the BatchNorm layers take (default: `clips`).
        epochs, learning_rate, batch_size: the head's fit (Adam, mean squared error).
        embed_batch_size: clips embedded at a time (a large encoder's activations are large).

    Returns:
        the calibrated model's MOS of `clips`, float [n].
    """
    clips = np.asarray(clips, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32).reshape(-1)
    if len(clips) != len(targets):
        raise ValueError(f"{len(clips)} clips but {len(targets)} targets")
    set_batch_norm_statistics(model.encoder, clips if batch_norm_clips is None else batch_norm_clips)
    embeddings = np.concatenate(
        [
            keras.ops.convert_to_numpy(model.embed(clips[start : start + embed_batch_size]))
            for start in range(0, len(clips), embed_batch_size)
        ]
    )
    model.head.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    model.head.fit(embeddings, targets[:, None], batch_size=batch_size, epochs=epochs, verbose=0)
    return np.asarray(model.head.predict(embeddings, verbose=0), dtype=np.float64).reshape(-1)
