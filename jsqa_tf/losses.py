"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (keras.ops only)."""

from __future__ import annotations

from keras import ops


def _similarities(z_a, z_b, temperature):
    """Cosine similarities / τ of the 2N signals, float32 [2N, 2N], self-pairs masked."""
    z = ops.concatenate([ops.cast(z_a, "float32"), ops.cast(z_b, "float32")], axis=0)
    z = z / ops.maximum(ops.norm(z, axis=1, keepdims=True), 1e-12)
    logits = ops.matmul(z, ops.transpose(z)) / temperature
    size = ops.shape(z)[0]
    return ops.where(ops.eye(size, dtype="bool"), ops.full_like(logits, -1e9), logits)


def _partners(num_pairs):
    """Index of each signal's other view: i <-> i + N."""
    index = ops.arange(2 * num_pairs)
    return ops.where(index < num_pairs, index + num_pairs, index - num_pairs)


def nt_xent_loss(z_a, z_b, temperature: float = 1.0):
    """The 2N × 2N SimCLR loss of N positive pairs (z_a[i], z_b[i]).

    Each of the 2N signals is classified among the other 2N - 1 by cosine similarity / τ: its
    positive is the other view, its negatives the other 2N - 2 signals. Computed in float32
    (whatever the inputs' dtype) with log-sum-exp, so it is stable for any τ.

    Args:
        z_a: [N, D] embeddings of the first views.
        z_b: [N, D] embeddings of the second views.
        temperature: τ.

    Returns:
        scalar float32: the mean over the 2N signals.
    """
    num_pairs = ops.shape(z_a)[0]
    logits = _similarities(z_a, z_b, temperature)
    positives = ops.take_along_axis(logits, ops.expand_dims(_partners(num_pairs), 1), axis=1)[:, 0]
    return ops.mean(ops.logsumexp(logits, axis=1) - positives)


def pair_retrieval_accuracy(z_a, z_b):
    """Share of the 2N signals whose nearest neighbour (cosine) in the batch is their partner."""
    num_pairs = ops.shape(z_a)[0]
    nearest = ops.argmax(_similarities(z_a, z_b, 1.0), axis=1)
    return ops.mean(ops.cast(ops.equal(nearest, _partners(num_pairs)), "float32"))
