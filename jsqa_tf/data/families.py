"""Pair families beyond additive noise: each family's degree, its unit, and its rendering.

A JND pair is one clean crop degraded twice by the same family, the two degrees within that
family's window (`PairSampling`):

    family     degree (one per view)                  |Δ| (unit)
    additive   SNR, dB                                |ΔSNR|, dB
    codec      measured bitrate, kbps (a bank's rung) |log2(bitrate ratio)|, octaves
    reverb     CDPAM's (DRR level, RT60 level), 0-100 the Euclidean distance of the two level
                                                      points, CDPAM's level units
    bandwidth  low-pass cutoff, Hz                    |log2(cutoff ratio)|, octaves

Windows: the pair's |Δ| has the density of the additive family's "uniform_window" pairs,
proportional to (window - d) on [0, window] (mean window / 3): `triangular_abs_delta`.

Reverb follows CDPAM's generator (`create_space/helper.py` of pranaymanocha/PerceptualAudio,
read, not copied): a room impulse response whose tail (after the peak + 56 samples at 44.1 kHz,
1.27 ms) is scaled by 100**(-L/100) for DRR level L (0 to -40 dB), and which is time-stretched
by 7**(L/100) for RT60 level L (1 to 7 times longer). CDPAM's list names its reverb files
`<noise level>_<DRR level>_<RT60 level>_...`: the human curve's distance is over all three,
and a reverb pair here moves the DRR and RT60 levels only (the noise, if any, is the same in
both views), so its distance is the two-level distance in the same units. Instead of a
recorded room, each pair's room is synthesised (`reverb_impulse_responses`): a direct path
(one sample) and a tail of Gaussian noise under an exponential decay of the room's RT60 (base
RT60 x the stretch) at the room's DRR (base DRR + the DRR level's scaling - the energy the
longer tail adds, as stretching a recorded response adds it). Both views share the room and
its noise: they differ only by the two levels. Each response is scaled to unit energy, so
that reverberation changes how the speech sounds, not its level. The reverberant crop is the
first `crop` samples of the full convolution (FFT, `render_reverb`), as CDPAM cuts its own.

Bandwidth: an ideal low-pass over the crop's FFT (bins above the cutoff set to zero).

Everything here is TensorFlow ops run inside the tf.data pipeline (`jsqa_tf.data.pairs`),
random draws stateless from the seeds given.
"""

from __future__ import annotations

import math

import tensorflow as tf

DIRECT_SECONDS = 56 / 44_100
"""The direct part of CDPAM's responses: the peak and the 56 samples (44.1 kHz) after it."""
DRR_RANGE_DB = 40.0
"""DRR level 100 scales the tail by 1/100: -40 dB."""
RT60_STRETCH = 7.0
"""RT60 level 100 stretches the response 7 times."""
DECAY = 3 * math.log(10)
"""An envelope exp(-DECAY t / RT60) falls by 60 dB (in energy) over RT60 seconds."""

UNITS = {
    "additive": "dB",
    "codec": "octaves",
    "reverb": "CDPAM level distance",
    "bandwidth": "octaves",
}
"""The unit of each family's |Δ| (pairs.csv's `unit` column)."""
DEGREE_UNITS = {
    "additive": "SNR dB",
    "codec": "kbps",
    "reverb": "DRR level/RT60 level (0-100)",
    "bandwidth": "cutoff Hz",
}
"""What each family's degree_a / degree_b columns hold."""


def triangular_abs_delta(u: tf.Tensor, window: float, cap: float | None = None) -> tf.Tensor:
    """|Δ| from uniforms `u` by the inverse CDF of its density ∝ (window - d) on [0, cap]
    (cap = window when None): the |Δ| of two uniform draws in one window, capped."""
    width = float(window)
    cap = width if cap is None else float(cap)
    return width - tf.sqrt(tf.maximum(width**2 - u * (2 * width * cap - cap**2), 0.0))


def fold(values: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """`values` reflected into [low, high] at its edges (as often as needed). Reflection never
    lengthens a step from a point inside the interval."""
    width = float(high - low)
    shifted = tf.math.floormod(values - low, 2 * width)
    return low + width - tf.abs(shifted - width)


def uniform_pairs_1d(num_pairs: int, seed: tf.Tensor, low: float, high: float, window: float) -> tf.Tensor:
    """[num_pairs, 2]: the first uniform in [low, high], the second the first ± a triangular
    |Δ| (`triangular_abs_delta`), folded into the range."""
    u = tf.random.stateless_uniform([num_pairs, 3], seed)
    first = low + u[:, 0] * (high - low)
    delta = triangular_abs_delta(u[:, 1], window)
    second = fold(first + tf.where(u[:, 2] < 0.5, delta, -delta), low, high)
    return tf.stack([first, second], axis=1)


def reverb_level_pairs(num_pairs: int, seed: tf.Tensor, low: float, high: float, window: float) -> tf.Tensor:
    """[num_pairs, 2 views, 2 (DRR level, RT60 level)]: the first point uniform in the square
    [low, high]², the second at a triangular distance (`triangular_abs_delta`) in a uniform
    direction, each level folded into the range (which only shortens the distance)."""
    u = tf.random.stateless_uniform([num_pairs, 4], seed)
    first = low + u[:, :2] * (high - low)
    distance = triangular_abs_delta(u[:, 2], window)
    angle = 2 * math.pi * u[:, 3]
    step = tf.stack([tf.cos(angle), tf.sin(angle)], axis=1) * distance[:, None]
    return tf.stack([first, fold(first + step, low, high)], axis=1)


def reverb_distance(levels: tf.Tensor) -> tf.Tensor:
    """[pairs]: the Euclidean distance between the two views' level points of [pairs, 2, 2]."""
    return tf.norm(levels[:, 0] - levels[:, 1], axis=-1)


def _tail_energy_sum(rt60: tf.Tensor, start: int, length: int, sample_rate: int) -> tf.Tensor:
    """sum over n in [start, length) of exp(-2 DECAY n / (sample_rate rt60)): a tail's energy
    under its envelope (geometric series)."""
    rate = 2 * DECAY / (sample_rate * rt60)
    return (tf.exp(-rate * start) - tf.exp(-rate * length)) / -tf.math.expm1(-rate)


def reverb_impulse_responses(
    levels: tf.Tensor,
    base_rt60_seconds: tf.Tensor,
    base_drr_db: tf.Tensor,
    seed: tf.Tensor,
    length: int,
    sample_rate: int,
) -> tf.Tensor:
    """[pairs, 2, length] unit-energy impulse responses of each pair's room at its two views'
    levels ([pairs, 2, 2]: DRR level, RT60 level).

    A pair's room: a direct path at sample 0 and a Gaussian-noise tail from `direct_samples`
    on (the same noise in both views), under the envelope exp(-DECAY t / RT60) with RT60 =
    base_rt60 x 7**(RT60 level / 100); the tail's energy gives DRR = base_drr + 40 x DRR
    level / 100 - 10 log10(E(RT60) / E(base_rt60)), E the envelope's energy: a longer
    tail carries more energy, as a time-stretched recording does. `reverb_facts` states both.
    """
    direct = direct_samples(sample_rate)
    rt60, drr_db = reverb_facts(levels, base_rt60_seconds, base_drr_db, length, sample_rate)
    positions = tf.range(length, dtype=tf.float32)
    envelope = tf.exp(-DECAY * positions / (sample_rate * rt60[..., None]))  # [pairs, 2, length]
    tail_mask = tf.cast(positions >= direct, tf.float32)
    noise = tf.random.stateless_normal([tf.shape(levels)[0], 1, length], seed)
    tail = noise * envelope * tail_mask
    target = tf.pow(10.0, -drr_db / 10.0)  # tail energy over the direct path's (1)
    tail = tail * tf.sqrt(target / tf.maximum(tf.reduce_sum(tf.square(tail), axis=-1), 1e-30))[..., None]
    direct_path = tf.one_hot(0, length, dtype=tf.float32)
    return (direct_path + tail) / tf.sqrt(1.0 + target)[..., None]


def direct_samples(sample_rate: int) -> int:
    """Samples of a response that count as its direct part (CDPAM's peak + 56 at 44.1 kHz)."""
    return max(1, round(DIRECT_SECONDS * sample_rate))


def reverb_facts(levels, base_rt60_seconds, base_drr_db, length: int, sample_rate: int):
    """(RT60 seconds, DRR dB), each [pairs, 2], of the responses `reverb_impulse_responses`
    makes for `levels` [pairs, 2, 2] in rooms of base RT60 and DRR [pairs]."""
    levels = tf.cast(levels, tf.float32)
    base_rt60 = tf.cast(base_rt60_seconds, tf.float32)[:, None]
    rt60 = base_rt60 * tf.pow(RT60_STRETCH, levels[..., 1] / 100.0)
    direct = direct_samples(sample_rate)
    stretch_db = 10.0 * (
        tf.math.log(
            _tail_energy_sum(rt60, direct, length, sample_rate)
            / _tail_energy_sum(base_rt60, direct, length, sample_rate)
        )
        / math.log(10.0)
    )
    drr_db = tf.cast(base_drr_db, tf.float32)[:, None] + DRR_RANGE_DB * levels[..., 0] / 100.0 - stretch_db
    return rt60, drr_db


def render_reverb(clean: tf.Tensor, responses: tf.Tensor) -> tf.Tensor:
    """[pairs, 2, samples]: each crop of `clean` [pairs, samples] convolved with its pair's two
    responses [pairs, 2, length] (FFT, no wrap-around), cut to the crop's length."""
    samples = clean.shape[-1] or tf.shape(clean)[-1]
    length = responses.shape[-1]
    size = 2 ** math.ceil(math.log2(int(samples) + int(length) - 1))
    spectrum = tf.signal.rfft(clean, [size])[:, None, :]
    wet = tf.signal.irfft(spectrum * tf.signal.rfft(responses, [size]), [size])
    return wet[..., :samples]


def render_bandwidth(clean: tf.Tensor, cutoffs_hz: tf.Tensor, sample_rate: int) -> tf.Tensor:
    """[pairs, 2, samples]: each crop of `clean` [pairs, samples] low-passed at its pair's two
    cutoffs [pairs, 2] (Hz): the FFT bins above a cutoff set to zero (an ideal low-pass)."""
    samples = int(clean.shape[-1])
    spectrum = tf.signal.rfft(clean)[:, None, :]  # [pairs, 1, bins]
    frequencies = tf.range(samples // 2 + 1, dtype=tf.float32) * (sample_rate / samples)
    keep = tf.cast(frequencies <= tf.cast(cutoffs_hz, tf.float32)[..., None], tf.complex64)
    return tf.signal.irfft(spectrum * keep, [samples])
