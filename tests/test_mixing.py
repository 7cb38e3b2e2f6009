import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsqa_tf.mixing import CLIP_LEVEL, mix_at_snr, mix_pair, mix_views


def measured_snr_db(clean, mixture):
    noise = mixture.astype(np.float64) - clean.astype(np.float64)
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2, -1) / np.mean(noise**2, -1))


def signal(seed, shape, kind, level):
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        x = rng.standard_normal(shape)
    elif kind == "uniform":
        x = rng.uniform(-1, 1, shape)
    else:  # bursty, speech-like: noise gated on and off
        x = (
            rng.standard_normal(shape)
            * (rng.random(shape[:-1] + (shape[-1] // 400 + 1,)) > 0.5).repeat(400, -1)[..., : shape[-1]]
        )
        x[..., 0] += 1e-3  # never all-zero
    return (level * x / (np.std(x, axis=-1, keepdims=True) + 1e-12)).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    batch=st.integers(1, 4),
    length=st.integers(256, 8000),
    clean_kind=st.sampled_from(["gaussian", "uniform", "bursty"]),
    noise_kind=st.sampled_from(["gaussian", "uniform", "bursty"]),
    clean_level=st.floats(1e-4, 0.5),
    noise_level=st.floats(1e-4, 2.0),
    snr=st.lists(st.floats(-20, 40), min_size=4, max_size=4),
)
def test_snr_is_exact(seed, batch, length, clean_kind, noise_kind, clean_level, noise_level, snr):
    clean = signal(seed, (batch, length), clean_kind, clean_level)
    noise = signal(seed + 1, (batch, length), noise_kind, noise_level)
    snr_db = np.array(snr[:batch], np.float32)
    mixture = np.asarray(mix_at_snr(clean, noise, snr_db))
    assert mixture.dtype == np.float32 and mixture.shape == clean.shape
    np.testing.assert_allclose(measured_snr_db(clean, mixture), snr_db, atol=0.01)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), snr=st.floats(-3, 9), loud=st.floats(0.5, 20))
def test_clipping_prevention_keeps_snr(seed, snr, loud):
    clean = signal(seed, (2, 4000), "gaussian", loud)
    noise = signal(seed + 7, (2, 4000), "uniform", 1.0)
    snr_db = np.full(2, snr, np.float32)
    mixture = np.asarray(mix_at_snr(clean, noise, snr_db, prevent_clipping=True))
    assert np.max(np.abs(mixture)) <= CLIP_LEVEL + 1e-6
    unclipped = np.asarray(mix_at_snr(clean, noise, snr_db))
    scale = mixture[:, :1] / unclipped[:, :1]
    np.testing.assert_allclose(mixture, unclipped * scale, rtol=1e-5, atol=1e-7)  # one gain per signal
    np.testing.assert_allclose(measured_snr_db(clean * scale, mixture), snr_db, atol=0.01)


def test_quiet_mixtures_are_not_scaled_up():
    clean = signal(0, (1, 1000), "gaussian", 0.01)
    noise = signal(1, (1, 1000), "gaussian", 0.01)
    np.testing.assert_array_equal(
        np.asarray(mix_at_snr(clean, noise, np.zeros(1), prevent_clipping=True)),
        np.asarray(mix_at_snr(clean, noise, np.zeros(1))),
    )


def test_a_short_utterance_is_mixed_at_its_nominal_snr_over_its_real_samples():
    """A 0.4 s utterance zero-padded to a 1 s crop: the SNR holds over the utterance's samples
    (to 0.01 dB), the noise covers the whole crop, and the padding left in the power would
    have put the real SNR 10 log10(1 / 0.4) = 3.98 dB above the nominal one."""
    length, valid = 16_000, np.array([6_400, 16_000, 1])
    speech = signal(0, (3, length), "bursty", 0.1)
    clean = np.where(np.arange(length) < valid[:, None], speech, 0.0).astype(np.float32)
    noise = signal(1, (3, length), "gaussian", 0.3)
    snr_db = np.array([[2.5, -3.0], [7.0, 0.0], [5.0, 5.0]], np.float32)
    a, b = (np.asarray(v) for v in mix_pair(clean, noise, snr_db, num_valid_samples=valid))
    for view, column in ((a, 0), (b, 1)):
        for i, n in enumerate(valid):
            assert measured_snr_db(clean[i, :n], view[i, :n]) == pytest.approx(snr_db[i, column], abs=0.01)
    assert np.all(a[0, 6_400:] != 0) and np.all(np.isfinite(a))  # noise alone past the utterance
    np.testing.assert_array_equal(  # a full crop (valid = length) is mixed as without lengths
        np.asarray(mix_at_snr(clean[1], noise[1], snr_db[1, 0], num_valid_samples=valid[1])),
        np.asarray(mix_at_snr(clean[1], noise[1], snr_db[1, 0])),
    )
    padded = np.asarray(mix_at_snr(clean[0], noise[0], snr_db[0, 0]))  # the padding counted
    real = measured_snr_db(clean[0, :6_400], padded[:6_400])
    assert real - snr_db[0, 0] == pytest.approx(10 * np.log10(16_000 / 6_400), abs=0.05)


def test_silent_inputs_give_finite_documented_output():
    noise = signal(0, (2, 1000), "gaussian", 0.1)
    clean = signal(1, (2, 1000), "gaussian", 0.1)
    silent = np.zeros((2, 1000), np.float32)
    snr_db = np.array([0.0, 5.0], np.float32)
    out = np.asarray(mix_at_snr(silent, noise, snr_db, prevent_clipping=True))
    assert np.all(np.isfinite(out)) and not out.any()  # silent speech: noise gain 0
    out = np.asarray(mix_at_snr(clean, silent, snr_db, prevent_clipping=True))
    np.testing.assert_array_equal(out, clean)  # silent noise: the clean signal
    out = np.asarray(mix_at_snr(silent, silent, snr_db))
    assert np.all(np.isfinite(out)) and not out.any()


def test_half_precision_inputs_are_mixed_in_float32():
    clean = signal(0, (3, 2000), "gaussian", 0.1).astype(np.float16)
    noise = signal(1, (3, 2000), "gaussian", 0.3).astype(np.float16)
    snr_db = np.array([-3.0, 2.5, 9.0], np.float16)
    mixture = np.asarray(mix_at_snr(clean, noise, snr_db))
    assert mixture.dtype == np.float32
    np.testing.assert_allclose(measured_snr_db(clean.astype(np.float32), mixture), snr_db, atol=0.01)


def test_pair_views_share_speech_and_noise_and_one_peak_scale():
    clean = signal(0, (4, 3000), "gaussian", 3.0)  # loud: forces clipping prevention
    noise = signal(1, (4, 3000), "uniform", 1.0)
    snr_db = np.array([[3, 5], [9, 8], [-3, 0], [4, 4]], np.float32)
    a, b = (np.asarray(v) for v in mix_pair(clean, noise, snr_db, prevent_clipping=True))
    assert max(np.abs(a).max(), np.abs(b).max()) <= CLIP_LEVEL + 1e-6
    for i in range(4):
        # Both views are s·(clean + g·noise) with one s: least squares recovers s, g_a, g_b.
        basis = np.stack([clean[i], noise[i]], axis=1)
        (sa, ga), *_ = np.linalg.lstsq(basis, a[i], rcond=None)
        (sb, gb), *_ = np.linalg.lstsq(basis, b[i], rcond=None)
        assert sa == pytest.approx(sb, rel=1e-5)
        snr_from_gains = 10 * np.log10(
            np.mean(clean[i] ** 2) / (np.array([ga, gb]) / sa) ** 2 / np.mean(noise[i] ** 2)
        )
        np.testing.assert_allclose(snr_from_gains, snr_db[i], atol=0.01)


def test_family_views_noise_set_against_view_a_and_no_noise_at_inf():
    """mix_views: with clean_b == clean it is mix_pair; one SNR in both columns adds the very
    same noise to both views, whatever the level of clean_b; +inf adds none, finitely."""
    clean = signal(0, (4, 3000), "gaussian", 0.3)
    clean_b = 0.25 * signal(2, (4, 3000), "gaussian", 0.3)  # another level and content
    noise = signal(1, (4, 3000), "uniform", 1.0)
    snr_db = np.array([[3, 5], [4, 4], [np.inf, np.inf], [-3, 6]], np.float32)
    same = [np.asarray(v) for v in mix_views(clean, clean, noise, snr_db, prevent_clipping=True)]
    for x, y in zip(same, mix_pair(clean, noise, snr_db, prevent_clipping=True), strict=True):
        np.testing.assert_array_equal(x, np.asarray(y))
    a, b = (np.asarray(v) for v in mix_views(clean, clean_b, noise, snr_db))
    assert np.isfinite(a).all() and np.isfinite(b).all()
    np.testing.assert_allclose(a[1] - clean[1], b[1] - clean_b[1], atol=1e-6)  # the same noise
    assert measured_snr_db(clean[1], a[1]) == pytest.approx(4.0, abs=0.01)
    np.testing.assert_array_equal(a[2], clean[2])  # no noise
    np.testing.assert_array_equal(b[2], clean_b[2])


def test_mixing_runs_under_the_jax_backend(tmp_path):
    """The same keras.ops code, jit-compiled by JAX, gives the same mixtures (subprocess:
    the backend is chosen once per process); pair families' views too, +inf SNR included."""
    import os
    import subprocess
    import sys

    clean = signal(0, (3, 4000), "gaussian", 0.2)
    noise = signal(1, (3, 4000), "bursty", 0.5)
    snr_db = np.array([[-3, 0], [5.5, 9], [2, 2]], np.float32)
    valid = np.array([4000, 1500, 4000], np.int32)
    clean_b = 0.5 * clean[::-1]
    family_snr_db = np.array([[np.inf, np.inf], [4, 4], [1, 3]], np.float32)
    np.savez(
        tmp_path / "inputs.npz",
        clean=clean,
        noise=noise,
        snr_db=snr_db,
        valid=valid,
        clean_b=clean_b,
        family_snr_db=family_snr_db,
    )
    script = (
        "import numpy as np, jax, keras\n"
        "from jsqa_tf.mixing import mix_pair, mix_views\n"
        "assert keras.backend.backend() == 'jax'\n"
        f"x = np.load({str(tmp_path / 'inputs.npz')!r})\n"
        "mix = jax.jit(lambda c, n, s, v: mix_pair(c, n, s, num_valid_samples=v, prevent_clipping=True))\n"
        "a, b = mix(x['clean'], x['noise'], x['snr_db'], x['valid'])\n"
        "views = jax.jit(lambda c, d, n, s: mix_views(c, d, n, s, prevent_clipping=True))\n"
        "fa, fb = views(x['clean'], x['clean_b'], x['noise'], x['family_snr_db'])\n"
        f"np.savez({str(tmp_path / 'out.npz')!r}, a=np.asarray(a), b=np.asarray(b), fa=fa, fb=fb)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    out = np.load(tmp_path / "out.npz")
    a, b = (
        np.asarray(v) for v in mix_pair(clean, noise, snr_db, num_valid_samples=valid, prevent_clipping=True)
    )
    np.testing.assert_allclose(out["a"], a, atol=1e-6)
    np.testing.assert_allclose(out["b"], b, atol=1e-6)
    fa, fb = (np.asarray(v) for v in mix_views(clean, clean_b, noise, family_snr_db, prevent_clipping=True))
    assert np.isfinite(out["fa"]).all() and np.isfinite(out["fb"]).all()
    np.testing.assert_allclose(out["fa"], fa, atol=1e-6)
    np.testing.assert_allclose(out["fb"], fb, atol=1e-6)
    np.testing.assert_array_equal(out["fa"][0], clean[0])  # +inf: no noise, under JAX too
