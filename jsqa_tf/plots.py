"""Figures written as PNG (matplotlib, no display needed)."""

from __future__ import annotations

import io

import numpy as np


def delta_snr_histogram_png(abs_delta_db: np.ndarray, snr_window_db: float, title: str = "") -> bytes:
    """The |ΔSNR| histogram of JND pairs (the paper's Fig. 4) with the expected triangle.

    Args:
        abs_delta_db: |ΔSNR| of each pair, in dB.
        snr_window_db: the window both SNRs were drawn from; the expected density of |ΔSNR|
            is 2 (w - d) / w² on [0, w], mean w / 3.
        title: figure title.

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
    d = np.linspace(0, snr_window_db, 100)
    axes.plot(d, 2 * (snr_window_db - d) / snr_window_db**2, "k--", label="expected density")
    mean = float(np.mean(abs_delta_db))
    axes.axvline(mean, color="#c44e52", label=f"mean {mean:.2f} dB (expected {snr_window_db / 3:.2f})")
    axes.set_xlabel("|ΔSNR| (dB)")
    axes.set_ylabel("density")
    axes.set_title(title or f"|ΔSNR| of {len(abs_delta_db)} JND pairs")
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def mos_scatter_png(
    panels: list[tuple[str, np.ndarray, np.ndarray]],
    mos_range: tuple[float, float] = (1.0, 5.0),
    title: str = "",
) -> bytes:
    """Predicted against subjective MOS, one panel per (name, mos, predicted), with the
    identity line and each panel's PCC and RMSE.

    Returns:
        PNG bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * len(panels), 4.2), dpi=100)
    axes_list = np.atleast_1d(figure.subplots(1, len(panels)))
    low, high = mos_range
    for axes, (name, mos, predicted) in zip(axes_list, panels, strict=True):
        mos, predicted = np.asarray(mos, float), np.asarray(predicted, float)
        axes.plot([low, high], [low, high], "k--", linewidth=1, label="identity")
        axes.scatter(mos, predicted, s=10 if len(mos) > 200 else 18, alpha=0.6, color="#4c72b0")
        pcc = np.corrcoef(mos, predicted)[0, 1] if len(mos) > 1 and np.std(predicted) > 0 else float("nan")
        rmse = float(np.sqrt(np.mean((mos - predicted) ** 2))) if len(mos) else float("nan")
        axes.set_title(f"{name} (n={len(mos)}): PCC {pcc:.3f}, RMSE {rmse:.3f}", fontsize=9)
        axes.set_xlim(low - 0.1, high + 0.1)
        axes.set_ylim(low - 0.1, high + 0.1)
        axes.set_aspect("equal")
        axes.set_xlabel("subjective MOS")
        axes.set_ylabel("predicted MOS")
        axes.grid(alpha=0.3)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
