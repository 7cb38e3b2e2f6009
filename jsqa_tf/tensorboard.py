"""TensorBoard summaries of JND pairs: example pairs as audio, the |ΔSNR| histogram as image."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jsqa_tf.mixing import mix_views
from jsqa_tf.plots import delta_snr_histogram_png


def log_pairs(
    writer: tf.summary.SummaryWriter,
    clean: tf.Tensor,
    noise: tf.Tensor,
    snr_db: tf.Tensor,
    *,
    num_valid_samples: tf.Tensor | None = None,
    step: int,
    snr_window_db: float,
    max_abs_delta_db: float | None = None,
    snr_placement: str = "uniform_window",
    snr_range_db: tuple[float, ...] | None = None,
    sample_rate: int = 16_000,
    max_outputs: int = 3,
    all_abs_delta_db: np.ndarray | None = None,
    clean_b: tf.Tensor | None = None,
) -> None:
    """Writes example pairs (view a, 0.5 s of silence, view b) and the |ΔSNR| histogram.

    Args:
        writer: where to write.
        clean, noise, snr_db, num_valid_samples: one batch from `make_pair_dataset`.
        step: the summary step.
        snr_window_db, max_abs_delta_db, snr_placement, snr_range_db: for the expected
            density drawn on the histogram (`PairConfig`).
        sample_rate: of the audio, in Hz.
        max_outputs: pairs written as audio.
        all_abs_delta_db: |ΔSNR| of more pairs for the histogram (default: this batch's; only
            finite ones are drawn, and none when there are none: pairs without noise).
        clean_b: view b's speech, for pair families (`jsqa_tf.mixing.mix_views`).
    """
    view_a, view_b = mix_views(
        clean,
        clean if clean_b is None else clean_b,
        noise,
        snr_db,
        num_valid_samples=num_valid_samples,
        prevent_clipping=True,
    )
    gap = tf.zeros([tf.shape(view_a)[0], sample_rate // 2])
    joined = tf.concat([view_a, gap, view_b], axis=1)[:max_outputs]
    deltas = all_abs_delta_db
    if deltas is None:
        deltas = np.abs(np.asarray(snr_db)[:, 0] - np.asarray(snr_db)[:, 1])
    deltas = np.asarray(deltas)[np.isfinite(deltas)]
    png = (
        None
        if not len(deltas)
        else delta_snr_histogram_png(
            deltas,
            snr_window_db,
            max_abs_delta_db=max_abs_delta_db,
            snr_placement=snr_placement,
            snr_range_db=snr_range_db,
        )
    )
    snr_text = ", ".join(
        f"pair {i}: {a:.2f} / {b:.2f} dB" for i, (a, b) in enumerate(np.asarray(snr_db)[:max_outputs])
    )
    with writer.as_default(step=step):
        tf.summary.audio(
            "jnd_pairs/a_then_b",
            joined[..., None],
            sample_rate,
            max_outputs=max_outputs,
            description=f"each clip: view a, 0.5 s silence, view b ({snr_text})",
        )
        if png is not None:
            tf.summary.image("jnd_pairs/abs_delta_snr_histogram", tf.image.decode_png(png)[None])
            tf.summary.histogram("jnd_pairs/abs_delta_snr_db", deltas)
            tf.summary.scalar("jnd_pairs/mean_abs_delta_snr_db", float(np.mean(deltas)))
    writer.flush()
