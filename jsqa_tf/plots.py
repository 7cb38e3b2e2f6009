"""Figures written as PNG (matplotlib, no display needed)."""

from __future__ import annotations

import io

import numpy as np

from jsqa_tf.config import abs_delta_snr_density, expected_mean_abs_delta_db


def delta_snr_histogram_png(
    abs_delta_db: np.ndarray,
    snr_window_db: float,
    title: str = "",
    *,
    max_abs_delta_db: float | None = None,
) -> bytes:
    """The |ΔSNR| histogram of JND pairs (the paper's Fig. 4) with the expected density.

    Args:
        abs_delta_db: |ΔSNR| of each pair, in dB.
        snr_window_db: the window both SNRs were drawn from; the expected density of |ΔSNR|
            is 2 (w - d) / w² on [0, w], mean w / 3.
        title: figure title.
        max_abs_delta_db: the cap on |ΔSNR|, if any (`jsqa_tf.config.abs_delta_snr_density`).

    Returns:
        PNG bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.subplots()
    bins = np.linspace(0, snr_window_db, 25)
    axes.hist(abs_delta_db, bins=bins, density=True, color="#4c72b0", alpha=0.8, label="pairs")
    d = np.linspace(0, snr_window_db, 200)
    density = abs_delta_snr_density(d, snr_window_db, max_abs_delta_db)
    axes.plot(d, density, "k--", label="expected density")
    mean = float(np.mean(abs_delta_db))
    expected = expected_mean_abs_delta_db(snr_window_db, max_abs_delta_db)
    axes.axvline(mean, color="#c44e52", label=f"mean {mean:.2f} dB (expected {expected:.2f})")
    axes.set_xlabel("|ΔSNR| (dB)")
    axes.set_ylabel("density")
    axes.set_title(title or f"|ΔSNR| of {len(abs_delta_db)} JND pairs")
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
