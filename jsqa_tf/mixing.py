"""Mixing speech and noise at a given SNR, with keras.ops only (TensorFlow, JAX, PyTorch).

It runs inside the model's step on the accelerator: the input pipeline ships clean speech,
noise and SNRs, and the mixtures are made where they are consumed.

SNR is defined over the speech's real samples: SNR_dB = 10 log10(mean(clean²) /
mean(scaled_noise²)), both means over the first `num_valid_samples` samples of each crop (the
whole crop when it is not given). A crop of an utterance shorter than the crop is the
utterance followed by zeros; counting those zeros in the speech power would put its real SNR
above the nominal one (by 10 log10(crop / utterance) dB: 3 dB for a 2 s utterance in a 4 s
crop). The noise still covers the whole crop: past the utterance's end the mixture is noise
alone, as in a pause at the end of a recording. The noise is scaled; the clean signal is kept
as it is. All arithmetic is float32, whatever the inputs' dtype (mixed precision included), so
the requested SNR is met to ~1e-4 dB.

Views without noise: an SNR of +inf gives a noise gain of 0 (10**(-inf / 10) = 0), so the
mixture is the clean signal, finite under TensorFlow and JAX alike.

Silent inputs: with silent (all-zero) clean speech the noise gain is 0 and the mixture is the
silent clean signal; with silent noise the mixture is the clean signal. Both stay finite.
"""

from __future__ import annotations

from keras import ops

POWER_FLOOR = 1e-12
"""Added to the noise power so that a silent noise never divides by zero."""

CLIP_LEVEL = 0.999
"""Peak that `prevent_clipping` scales mixtures down to (never up)."""


def _power(signal, num_valid_samples=None):
    """Mean square over the last axis, or over its first `num_valid_samples` samples."""
    if num_valid_samples is None:
        return ops.mean(ops.square(signal), axis=-1)
    valid = ops.cast(num_valid_samples, "int32")
    positions = ops.arange(ops.shape(signal)[-1], dtype="int32")
    mask = ops.cast(positions < ops.expand_dims(valid, -1), "float32")
    count = ops.cast(ops.maximum(valid, 1), "float32")
    return ops.sum(ops.square(signal) * mask, axis=-1) / count


def noise_gain(clean, noise, snr_db, num_valid_samples=None):
    """Gain that brings `noise` to `snr_db` below `clean` (shape of `snr_db`), both powers
    measured over the first `num_valid_samples` samples (all when None). `snr_db` is [...]
    (one per signal) or [..., k]: k gains from one measurement of the powers."""
    clean_power = _power(ops.cast(clean, "float32"), num_valid_samples)
    noise_power = _power(ops.cast(noise, "float32"), num_valid_samples) + POWER_FLOOR
    snr_db = ops.cast(snr_db, "float32")
    if len(snr_db.shape) > len(clean_power.shape):
        clean_power, noise_power = ops.expand_dims(clean_power, -1), ops.expand_dims(noise_power, -1)
    return ops.sqrt(clean_power * ops.power(10.0, -snr_db / 10.0) / noise_power)


def _peak_scale(*mixtures):
    peak = ops.max(ops.stack([ops.max(ops.abs(m), axis=-1) for m in mixtures]), axis=0)
    return ops.minimum(1.0, CLIP_LEVEL / ops.maximum(peak, POWER_FLOOR))


def mix_at_snr(clean, noise, snr_db, *, num_valid_samples=None, prevent_clipping: bool = False):
    """Adds `noise` to `clean` at `snr_db`.

    Args:
        clean: [..., num_samples] speech, zero-padded past `num_valid_samples`.
        noise: [..., num_samples] noise, same shape as `clean`.
        snr_db: [...] the SNR of each mixture, in dB.
        num_valid_samples: [...] int, samples of `clean` that are speech (the rest is padding);
            the SNR holds over them. None: the whole crop.
        prevent_clipping: scale a mixture whose peak exceeds 0.999 down to 0.999; speech and
            noise are scaled together, so the SNR is kept.

    Returns:
        float32 [..., num_samples] mixtures.
    """
    clean = ops.cast(clean, "float32")
    noise = ops.cast(noise, "float32")
    gain = noise_gain(clean, noise, snr_db, num_valid_samples)
    mixture = clean + ops.expand_dims(gain, -1) * noise
    if prevent_clipping:
        mixture = mixture * ops.expand_dims(_peak_scale(mixture), -1)
    return mixture


def mix_pair(clean, noise, snr_db, *, num_valid_samples=None, prevent_clipping: bool = False):
    """Both views of JND pairs: the same speech and noise at two SNRs.

    Args:
        clean: [batch, num_samples] speech, zero-padded past `num_valid_samples`.
        noise: [batch, num_samples] noise excerpts.
        snr_db: [batch, 2] the two SNRs of each pair, in dB.
        num_valid_samples: [batch] int, samples of each clean crop that are speech (the pair
            sampler's 4th element); the SNRs hold over them. None: the whole crop.
        prevent_clipping: as in `mix_at_snr`, with one factor for both views of a pair, so
            the speech keeps the same level in both and only the noise differs.

    Returns:
        (view_a, view_b), each float32 [batch, num_samples].
    """
    return mix_views(
        clean, clean, noise, snr_db, num_valid_samples=num_valid_samples, prevent_clipping=prevent_clipping
    )


def mix_views(clean_a, clean_b, noise, snr_db, *, num_valid_samples=None, prevent_clipping: bool = False):
    """Both views of pairs whose speech may differ (pair families, `jsqa_tf.data.families`):
    view a = clean_a + noise at snr_db[:, 0], view b = clean_b + noise at snr_db[:, 1], both
    SNRs set against clean_a's speech. So a pair with one SNR in both columns carries the very
    same noise in both views, whatever its family does to the speech level; with clean_b ==
    clean_a this is `mix_pair`. +inf: no noise.

    Args:
        clean_a, clean_b: [batch, num_samples] the two degraded speech crops.
        noise, snr_db, num_valid_samples, prevent_clipping: as in `mix_pair`.

    Returns:
        (view_a, view_b), each float32 [batch, num_samples].
    """
    clean_a = ops.cast(clean_a, "float32")
    clean_b = ops.cast(clean_b, "float32")
    noise = ops.cast(noise, "float32")
    gains = noise_gain(clean_a, noise, snr_db, num_valid_samples)  # [batch, 2], the powers once
    view_a = clean_a + gains[:, :1] * noise
    view_b = clean_b + gains[:, 1:] * noise
    if prevent_clipping:
        scale = ops.expand_dims(_peak_scale(view_a, view_b), -1)
        view_a, view_b = view_a * scale, view_b * scale
    return view_a, view_b
