import numpy as np
import pytest

from jsqa_tf.losses import nt_xent_loss, pair_retrieval_accuracy


def reference_nt_xent(z_a, z_b, temperature):
    """SimCLR's NT-Xent, written out loop by loop in float64."""
    z = np.concatenate([z_a, z_b]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z_a)
    total = 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        numerator = np.exp(z[i] @ z[partner] / temperature)
        denominator = sum(np.exp(z[i] @ z[k] / temperature) for k in range(2 * n) if k != i)
        total += -np.log(numerator / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.1])
@pytest.mark.parametrize("num_pairs,dim", [(8, 256), (3, 5)])
def test_matches_the_numpy_reference(temperature, num_pairs, dim):
    rng = np.random.default_rng(num_pairs)
    z_a = rng.standard_normal((num_pairs, dim)).astype(np.float32)
    z_b = (z_a + 0.5 * rng.standard_normal((num_pairs, dim))).astype(np.float32)
    loss = float(nt_xent_loss(z_a, z_b, temperature))
    assert loss == pytest.approx(reference_nt_xent(z_a, z_b, temperature), abs=1e-6, rel=1e-6)


def test_stable_for_small_temperatures_and_half_precision():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((8, 64)).astype(np.float16)
    loss = float(nt_xent_loss(z, z, 0.01))  # logits up to 100: exp would overflow in float16
    assert np.isfinite(loss) and loss == pytest.approx(reference_nt_xent(z, z, 0.01), rel=1e-3)
    identical = float(nt_xent_loss(np.ones((4, 3)), np.ones((4, 3)), 1.0))
    assert identical == pytest.approx(np.log(7))  # no information: log(2N - 1)


def test_pair_retrieval_accuracy():
    z_a = np.eye(4, dtype=np.float32)
    z_b = np.eye(4, dtype=np.float32) + 0.1
    assert float(pair_retrieval_accuracy(z_a, z_b)) == 1.0
    swapped = z_b[[1, 0, 2, 3]]  # pairs 0 and 1 find each other's partner
    assert float(pair_retrieval_accuracy(z_a, swapped)) == 0.5
