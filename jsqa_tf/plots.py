"""Figures written as PNG (matplotlib, no display needed)."""

from __future__ import annotations

import io

import numpy as np

from jsqa_tf.data.snr import abs_delta_snr_density, expected_mean_abs_delta_db, single_snr_density


def _png(figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _abs_delta_panel(axes, abs_delta_db, snr_window_db, max_abs_delta_db, placement, title):
    bins = np.linspace(0, snr_window_db, 25)
    axes.hist(abs_delta_db, bins=bins, density=True, color="#4c72b0", alpha=0.8, label="pairs")
    d = np.linspace(0, snr_window_db, 200)
    density = abs_delta_snr_density(d, snr_window_db, max_abs_delta_db, **placement)
    axes.plot(d, density, "k--", label="expected density")
    mean = float(np.mean(abs_delta_db))
    expected = expected_mean_abs_delta_db(snr_window_db, max_abs_delta_db, **placement)
    axes.axvline(mean, color="#c44e52", label=f"mean {mean:.2f} dB (expected {expected:.2f})")
    axes.set_xlabel("|ΔSNR| (dB)")
    axes.set_ylabel("density")
    axes.set_title(title or f"|ΔSNR| of {len(abs_delta_db)} JND pairs")
    axes.legend(loc="upper right", fontsize=8)


def delta_snr_histogram_png(
    abs_delta_db: np.ndarray,
    snr_window_db: float,
    title: str = "",
    *,
    max_abs_delta_db: float | None = None,
    snr_placement: str = "uniform_window",
    snr_range_db: tuple[float, ...] | None = None,
) -> bytes:
    """The |ΔSNR| histogram of JND pairs (the paper's Fig. 4) with the expected density.

    Args:
        abs_delta_db: |ΔSNR| of each pair, in dB.
        snr_window_db: the window both SNRs were drawn from; the expected density of |ΔSNR|
            is 2 (w - d) / w² on [0, w], mean w / 3 (for "uniform_window" placement).
        title: figure title.
        max_abs_delta_db: the cap on |ΔSNR|, if any (`jsqa_tf.data.snr.abs_delta_snr_density`).
        snr_placement, snr_range_db: as in `jsqa_tf.data.snr` (the range is needed for "uniform_snr").

    Returns:
        PNG bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    placement = {"snr_placement": snr_placement, "snr_range_db": snr_range_db}
    _abs_delta_panel(figure.subplots(), abs_delta_db, snr_window_db, max_abs_delta_db, placement, title)
    return _png(figure)


def family_delta_histogram_png(abs_delta: np.ndarray, window: float, family: str, unit: str) -> bytes:
    """The |Δ| histogram of one pair family's drawn pairs over [0, window], with the density
    a triangular draw implies (2 (window - d) / window²; the additive, reverb and bandwidth
    families draw so, reflected at the range's edges; the codec family draws bank rungs).

    Returns:
        PNG bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.subplots()
    axes.hist(
        abs_delta, bins=np.linspace(0, window, 25), density=True, color="#4c72b0", alpha=0.8, label="pairs"
    )
    if family != "codec":
        d = np.linspace(0, window, 200)
        axes.plot(d, 2 * (window - d) / window**2, "k--", label="triangular density")
    mean = float(np.mean(abs_delta))
    axes.axvline(mean, color="#c44e52", label=f"mean {mean:.3g} (window / 3 = {window / 3:.3g})")
    axes.set_xlabel(f"|Δ| ({unit})")
    axes.set_ylabel("density")
    axes.set_title(f"{family}: |Δ| of {len(abs_delta)} pairs")
    axes.legend(loc="upper right", fontsize=8)
    return _png(figure)


def snr_distributions_png(snr_db: np.ndarray, pair_config) -> bytes:
    """Single SNRs (both views of every pair) and |ΔSNR| of drawn pairs, each against the
    density `pair_config` (a `PairConfig`) implies: what `snr_placement` changes.

    Args:
        snr_db: [pairs, 2] the two SNRs of each pair, in dB.
        pair_config: the sampler's settings.

    Returns:
        PNG bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    snr_db = np.asarray(snr_db, dtype=np.float64)
    low, high = pair_config.snr_range_db
    window, cap = pair_config.snr_window_db, pair_config.max_abs_delta_db
    placement = {"snr_placement": pair_config.snr_placement, "snr_range_db": pair_config.snr_range_db}
    figure = Figure(figsize=(11, 4), dpi=100)
    single, delta = figure.subplots(1, 2)
    values = snr_db.ravel()
    single.hist(
        values, bins=np.linspace(low, high, 25), density=True, color="#55a868", alpha=0.8, label="SNRs"
    )
    x = np.linspace(low, high, 400)
    expected = single_snr_density(
        x,
        (low, high),
        window,
        cap,
        snr_window_low_db=pair_config.snr_window_low_db,
        snr_placement=pair_config.snr_placement,
    )
    single.plot(x, expected, "k--", label="expected density")
    below = float(np.mean(values < 0))
    single.axvline(0.0, color="#c44e52", lw=0.8, label=f"{100 * below:.1f}% below 0 dB")
    single.set_xlabel("SNR of one view (dB)")
    single.set_ylabel("density")
    single.set_title(f"single SNRs, snr_placement {pair_config.snr_placement}")
    single.legend(loc="lower center", fontsize=8)
    abs_delta = np.abs(snr_db[:, 0] - snr_db[:, 1])
    _abs_delta_panel(delta, abs_delta, window, cap, placement, f"|ΔSNR| of {len(abs_delta)} pairs")
    return _png(figure)


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


_THRESHOLD_COLOURS = ("#c44e52", "#8172b2", "#55a868", "#ccb974")


def jnd_curve_png(report: dict, curves: dict, pair_config) -> bytes:
    """The label-only JND curve(s) of `jsqa_tf.jnd_curve.curve_report`, one panel per kind.

    Each panel: P(same) per bin with Wilson 95% intervals (marker area ~ pairs), identical
    files apart at x = 0, the fitted curve with its pointwise bootstrap 95% band, floor and
    ceiling, and the thresholds (with their intervals). Under the additive panel: the |ΔSNR|
    density of the configured pair sampler (`pair_config`), on the same axis.

    Args:
        report: the report `curve_report` returns.
        curves: its pooled `Curve` per kind (`.fit`, `.bins`).
        pair_config: the `PairConfig` whose |ΔSNR| density is drawn.

    Returns:
        PNG bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    kinds = [kind for kind in report["kinds"] if kind in curves]
    ratios = []
    for kind in kinds:
        ratios += [3, 1] if kind == "additive" else [3]
    figure = Figure(figsize=(8, 1.6 * sum(ratios) + 0.4), dpi=100)
    grid = figure.add_gridspec(len(ratios), 1, height_ratios=ratios or [1])
    row = 0
    for kind in kinds:
        curve, section = curves[kind], report[kind]
        axes = figure.add_subplot(grid[row])
        row += 1
        unit = section["unit"]
        bins = curve.bins
        x_max = max((b["x_high"] for b in bins), default=1.0)
        centres = np.array([b["mean_x"] for b in bins])
        p = np.array([b["p_same"] for b in bins])
        low = np.array([b["ci95"][0] for b in bins])
        high = np.array([b["ci95"][1] for b in bins])
        counts = np.array([b["num_pairs"] for b in bins])
        yerr = np.maximum([p - low, high - p], 0.0)  # Wilson ends can round past p by 1 ulp
        axes.errorbar(centres, p, yerr=yerr, fmt="none", ecolor="#4c72b0", alpha=0.7)
        axes.scatter(centres, p, s=8 + 60 * counts / max(counts.max(), 1), color="#4c72b0", zorder=3)
        axes.plot(
            [], [], "o", color="#4c72b0", label=f"bins of {section['pooled']['bin_width']:g} {unit} (95% CI)"
        )
        identical = section["pooled"]["identical"]
        if identical["num_pairs"]:
            share, (low_i, high_i) = identical["p_same"], identical["ci95"]
            axes.errorbar(
                [0.0],
                [share],
                yerr=np.maximum([[share - low_i], [high_i - share]], 0.0),
                fmt="s",
                mfc="white",
                color="k",
                label=f"identical files ({identical['num_pairs']})",
                zorder=4,
            )
        fit_report = section["pooled"].get("fit")
        if curve.fit is not None and fit_report:
            d = np.linspace(0.0, curve.fit.x_range[1], 400)
            axes.plot(d, curve.fit.model(d), color="k", lw=1.5, label="fit")
            boot = curve.fit.bootstrap_models()
            if boot:
                band = np.array([model(d) for model in boot])
                axes.fill_between(
                    d, *np.percentile(band, [2.5, 97.5], axis=0), color="k", alpha=0.12, label="fit 95% band"
                )
            for level in (curve.fit.model.floor, curve.fit.model.ceiling):
                axes.axhline(level, color="grey", lw=0.8, ls="--")
            for colour, (name, entry) in zip(
                _THRESHOLD_COLOURS, fit_report["thresholds"].items(), strict=False
            ):
                if entry["x"] is None:
                    continue
                axes.axvline(entry["x"], color=colour, lw=1, ls=":")
                axes.plot(
                    [entry["x"]],
                    [entry["p_same"]],
                    "D",
                    color=colour,
                    label=f"{name}: {entry['x']:.2f} {unit}",
                )
                if entry.get("ci95"):
                    axes.hlines(entry["p_same"], *entry["ci95"], color=colour, lw=3, alpha=0.6)
            gof = fit_report["goodness_of_fit"]
            quality = "poor fit" if gof["poor"] else "fit"
            p_text = f", p = {gof['p_value']:.2g}" if gof["p_value"] is not None else ""
            title = (
                f"{kind}: {quality}, deviance {gof['deviance']:.1f} on {gof['degrees_of_freedom']} df{p_text}"
            )
        else:
            title = f"{kind}: no fit"
        axes.set_title(title, fontsize=9)
        axes.set_ylim(-0.02, 1.02)
        axes.set_xlim(-0.02 * x_max - 0.3, x_max)
        axes.set_ylabel("P(same)")
        axes.legend(loc="upper right", fontsize=7)
        if kind == "additive":
            below = figure.add_subplot(grid[row], sharex=axes)
            row += 1
            d = np.linspace(0.0, x_max, 2000)
            window, cap = pair_config.snr_window_db, pair_config.max_abs_delta_db
            below.fill_between(d, abs_delta_snr_density(d, window, cap), color="#dd8452", alpha=0.6)
            cap_text = f", |ΔSNR| <= {cap:g} dB" if cap is not None else ""
            below.set_ylabel("density")
            below.set_title(f"pair sampler: |ΔSNR| of a {window:g} dB window{cap_text}", fontsize=8)
            below.set_xlabel(f"|ΔSNR| ({unit})")
        else:
            axes.set_xlabel(f"{section['label']} ({unit})")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
