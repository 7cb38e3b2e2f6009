"""The SNRs of JND pairs: how the pair sampler places them, and the densities that follow.

Every pair's two SNRs lie inside `snr_range_db` and within `snr_window_db` of each other (so
inside one window that wide), placed by `snr_placement` (`jsqa_tf.config.PairSampling`):

"uniform_window" (the default): both SNRs are drawn independently from one uniform window
`snr_window_db` wide, placed uniformly at random inside `snr_range_db` for each pair (or fixed
at `snr_window_low_db`). |ΔSNR| is then triangular on [0, window], mean window / 3 (2 dB for
the paper's 6 dB window inside [-3, 9] dB). Single SNRs are not uniform: the sum of the
window's place and the draw in it, a triangle on [-3, 9] peaking at 3 dB for the paper's
numbers (12.5% below 0 dB, against 25% for uniform SNRs).

"uniform_snr": single SNRs are uniform over `snr_range_db`. The first SNR is uniform over the
range; the second is the first plus a signed |ΔSNR| drawn from the same density as above,
reflected back into the range at its edges (so both SNRs are uniform, either may be the
higher, and |ΔSNR| is never larger than drawn). Near the range's edges the reflection shortens
|ΔSNR|: its density is f(d) (R - d) / R + (1 - F(d)) / R (R the range's width, f and F the
density and CDF above), mean 1.75 dB for the paper's numbers.

With `max_abs_delta_db` M, the pairs are those same pairs conditioned on |ΔSNR| <= M (drawn
directly, no rejection): |ΔSNR| has density 2 (W - d) / (2 W M - M²) on [0, M] (W the window),
and given |ΔSNR| the pair lies uniformly in the window, in random order (under "uniform_snr",
that is the drawn |ΔSNR| before reflection).

NumPy only: the JND curve (`jsqa_tf.jnd_curve`) uses these without TensorFlow.
"""

from __future__ import annotations

import numpy as np

SNR_PLACEMENTS = ("uniform_window", "uniform_snr")
"""How a pair's SNRs are placed in the SNR range: the paper says only that both come from "a
6 dB-wide window inside [-3, 9] dB"."""


def _range_width(snr_placement: str, snr_range_db) -> float:
    if snr_placement not in SNR_PLACEMENTS:
        raise ValueError(f"snr_placement must be one of {SNR_PLACEMENTS}, not {snr_placement!r}")
    if snr_placement == "uniform_snr" and snr_range_db is None:
        raise ValueError("snr_placement 'uniform_snr' needs snr_range_db")
    return 0.0 if snr_range_db is None else float(snr_range_db[1]) - float(snr_range_db[0])


def abs_delta_snr_density(
    abs_delta_db: np.ndarray,
    snr_window_db: float,
    max_abs_delta_db: float | None = None,
    *,
    snr_placement: str = "uniform_window",
    snr_range_db: tuple[float, ...] | None = None,
) -> np.ndarray:
    """Density of |ΔSNR| (per dB) of the pairs the sampler draws, at `abs_delta_db`.

    "uniform_window": f(d) = 2 (W - d) / (2 W M - M²) on [0, M], 0 elsewhere (W the window, M
    the cap, M = W without one: the triangle 2 (W - d) / W²); where the window lies in the SNR
    range does not matter. "uniform_snr" (needs `snr_range_db`, width R): the same |ΔSNR|
    reflected at the range's edges, f(d) (R - d) / R + (1 - F(d)) / R on [0, M], F the CDF of f.
    """
    width = _range_width(snr_placement, snr_range_db)
    window = float(snr_window_db)
    cap = window if max_abs_delta_db is None else float(max_abs_delta_db)
    d = np.asarray(abs_delta_db, dtype=np.float64)
    inside = (d >= 0) & (d <= cap)
    area = 2 * window * cap - cap**2
    density = 2 * (window - d) / area
    if snr_placement == "uniform_snr":
        cdf = (2 * window * d - d**2) / area
        density = density * (width - d) / width + (1 - cdf) / width
    return np.where(inside, density, 0.0)


def expected_mean_abs_delta_db(
    snr_window_db: float,
    max_abs_delta_db: float | None = None,
    *,
    snr_placement: str = "uniform_window",
    snr_range_db: tuple[float, ...] | None = None,
) -> float:
    """Mean of `abs_delta_snr_density`. "uniform_window": E[d] = (W M²/2 - M³/3) / (W M - M²/2),
    W / 3 without a cap. "uniform_snr": E[d] - E[d²] / (2 R), E[d²] = (W M³/3 - M⁴/4) /
    (W M - M²/2): 1.75 dB for the paper's 6 dB window in [-3, 9] dB."""
    width = _range_width(snr_placement, snr_range_db)
    window = float(snr_window_db)
    cap = window if max_abs_delta_db is None else float(max_abs_delta_db)
    half_area = window * cap - cap**2 / 2
    mean = (window * cap**2 / 2 - cap**3 / 3) / half_area
    if snr_placement == "uniform_snr":
        mean -= (window * cap**3 / 3 - cap**4 / 4) / half_area / (2 * width)
    return mean


def single_snr_density(
    snr_db: np.ndarray,
    snr_range_db: tuple[float, ...],
    snr_window_db: float,
    max_abs_delta_db: float | None = None,
    *,
    snr_window_low_db: float | None = None,
    snr_placement: str = "uniform_window",
) -> np.ndarray:
    """Density (per dB) of one view's SNR of the pairs the sampler draws, at `snr_db`.

    "uniform_snr": 1 / R on the range. "uniform_window": the window's low end L (uniform on
    [low, high - W], or fixed) plus a place in the window whose density is the length of
    {y in [0, W]: |x - y| <= M} over 2 W M - M² (1 / W without a cap); computed numerically.
    """
    _range_width(snr_placement, snr_range_db)
    low, high = (float(v) for v in snr_range_db)
    x = np.asarray(snr_db, dtype=np.float64)
    if snr_placement == "uniform_snr":
        return np.where((x >= low) & (x <= high), 1 / (high - low), 0.0)
    window = float(snr_window_db)
    cap = window if max_abs_delta_db is None else float(max_abs_delta_db)
    grid = np.linspace(0.0, window, 4001)
    place = (np.minimum(grid + cap, window) - np.maximum(grid - cap, 0.0)) / (2 * window * cap - cap**2)
    cdf = np.concatenate([[0.0], np.cumsum((place[1:] + place[:-1]) / 2 * np.diff(grid))])

    def place_cdf(value):
        return np.interp(value, grid, cdf, left=0.0, right=1.0)

    if snr_window_low_db is not None or high - low <= window:
        start = low if snr_window_low_db is None else float(snr_window_low_db)
        inside = (x >= start) & (x <= start + window)
        return np.where(inside, np.interp(x - start, grid, place), 0.0)
    return (place_cdf(x - low) - place_cdf(x - (high - window))) / (high - low - window)
