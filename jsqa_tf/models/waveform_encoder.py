"""The JSQA / CDPAM waveform encoder: stacked [Conv1D, BatchNorm, LeakyReLU] on raw audio."""

from __future__ import annotations

import keras
from keras import ops

# CDPAM's numerics (PyTorch lineage): BatchNorm1d's epsilon, and BatchNorm over every sample of
# the full-rate conv output before `x[:, :, ::2]` keeps every second one.
_CDPAM_NUMERICS = dict(batch_norm_epsilon=1e-5, decimation="subsample")

PRESETS = {
    # The paper's statements conflict (README, "Presets"). `jsqa` follows "512-d embeddings":
    # CDPAM's layout ending at 512 channels (22,132,224 trainable, not the paper's ~26 M).
    "jsqa": dict(
        first_filters=64,
        num_blocks=4,
        layers_per_block=4,
        kernel_size=15,
        embedding_dim=512,
        **_CDPAM_NUMERICS,
    ),
    # `cdpam` follows "~26 M trainable parameters": CDPAM's encoder layout, last conv 512 -> 1024
    # (26,065,920 trainable), with its forward pass (tested against a NumPy port); no weights.
    "cdpam": dict(
        first_filters=64,
        num_blocks=4,
        layers_per_block=4,
        kernel_size=15,
        embedding_dim=1024,
        **_CDPAM_NUMERICS,
    ),
    # CPU-sized presets for demos and tests: Keras's BatchNorm epsilon and the cheaper stride-2
    # decimation (the same values at inference; BatchNorm statistics differ in training).
    "small": dict(first_filters=16, num_blocks=4, layers_per_block=2, kernel_size=15, embedding_dim=128),
    "tiny": dict(first_filters=8, num_blocks=2, layers_per_block=2, kernel_size=7, embedding_dim=32),
}


def conv_channels(
    first_filters: int, num_blocks: int, layers_per_block: int, growth: int, embedding_dim: int
):
    """Output channels of every conv: constant within a block, multiplied by `growth` at the
    block's last conv; the very last conv outputs `embedding_dim`."""
    channels = []
    width = first_filters
    for block in range(num_blocks):
        for layer in range(layers_per_block):
            last_of_block = layer == layers_per_block - 1
            if block == num_blocks - 1 and last_of_block:
                channels.append(embedding_dim)
            else:
                channels.append(width * growth if last_of_block else width)
        width *= growth
    return channels


@keras.saving.register_keras_serializable(package="jsqa_tf")
class WaveformEncoder(keras.Model):
    """Raw 16 kHz waveform -> embedding.

    `num_blocks` blocks of `layers_per_block` × [Conv1D(kernel_size), BatchNorm, LeakyReLU];
    the last conv of each block multiplies the channels by `growth` (the network's last conv
    outputs `embedding_dim`) and the time axis is decimated ×2 after each block; global
    average pooling over time gives the embedding. Decimation "subsample" is CDPAM's order:
    conv, BatchNorm and LeakyReLU at the full rate, then every second sample kept
    (`x[:, :, ::2]`). "stride" makes the block's last conv stride-2 instead: the same output
    length, and at inference the same values, at half that layer's cost; in training its
    BatchNorm takes its batch statistics over the kept samples only, so outputs (and the
    moving statistics) differ from CDPAM's by a few percent.

    The defaults of `decimation` and `batch_norm_epsilon` are the ones every `.keras` file
    saved before they were arguments was trained with (Keras's epsilon, stride); the `jsqa`
    and `cdpam` presets set CDPAM's ("subsample", 1e-5).

    Args:
        first_filters: channels of the first block.
        num_blocks: blocks (each ends with a ×2 time decimation).
        layers_per_block: convs per block.
        growth: channel multiplier at the last conv of each block.
        kernel_size: conv kernel length, odd.
        embedding_dim: channels of the last conv = size of the embedding.
        contrastive_dim: leading embedding dimensions the contrastive loss sees (default half).
        decimation: "stride" or "subsample".
        leaky_relu_slope: negative slope of LeakyReLU.
        batch_norm_momentum: of the moving statistics; 0.9 is PyTorch's default (momentum
            0.1 there), which CDPAM trained with.
        batch_norm_epsilon: added to the variance; 1e-3 is Keras's default, 1e-5 PyTorch's
            (CDPAM's). With unit variances each BatchNorm's output differs by ~0.05% between
            the two, compounding over the layers; with small variances, by far more.
    """

    def __init__(
        self,
        first_filters: int = 64,
        num_blocks: int = 4,
        layers_per_block: int = 4,
        growth: int = 2,
        kernel_size: int = 15,
        embedding_dim: int = 512,
        contrastive_dim: int | None = None,
        decimation: str = "stride",
        leaky_relu_slope: float = 0.1,
        batch_norm_momentum: float = 0.9,
        batch_norm_epsilon: float = 1e-3,
        **kwargs,
    ):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if not batch_norm_epsilon > 0:
            raise ValueError(f"batch_norm_epsilon must be > 0, got {batch_norm_epsilon}")
        if decimation not in ("stride", "subsample"):
            raise ValueError(f"decimation must be 'stride' or 'subsample', not {decimation!r}")
        contrastive_dim = contrastive_dim or embedding_dim // 2
        if not 0 < contrastive_dim <= embedding_dim:
            raise ValueError(f"contrastive_dim must be in (0, {embedding_dim}], got {contrastive_dim}")
        channels = conv_channels(first_filters, num_blocks, layers_per_block, growth, embedding_dim)
        half = kernel_size // 2

        # === Layers ===
        add_channel_axis = keras.layers.Reshape((-1, 1), name="add_channel_axis")
        stages = []
        for index, filters in enumerate(channels):
            block, layer = divmod(index, layers_per_block)
            name = f"block{block + 1}_conv{layer + 1}"
            decimate_here = layer == layers_per_block - 1
            strided = decimate_here and decimation == "stride"
            stage = []
            if strided:  # explicit padding: output i is centred on input sample 2i, as in CDPAM
                stage.append(keras.layers.ZeroPadding1D(half, name=f"{name}_pad"))
            stage += [
                keras.layers.Conv1D(
                    filters,
                    kernel_size,
                    strides=2 if strided else 1,
                    padding="valid" if strided else "same",
                    name=name,
                ),
                keras.layers.BatchNormalization(
                    momentum=batch_norm_momentum, epsilon=batch_norm_epsilon, name=f"{name}_bn"
                ),
                keras.layers.LeakyReLU(negative_slope=leaky_relu_slope, name=f"{name}_act"),
            ]
            if decimate_here and decimation == "subsample":
                stage.append(
                    keras.layers.MaxPooling1D(pool_size=1, strides=2, name=f"block{block + 1}_decimate")
                )
            stages.append(stage)
        pooling = keras.layers.GlobalAveragePooling1D(name="pooling")

        # === Functional Model ===
        waveform = keras.Input(shape=(None,), name="waveform")
        x = add_channel_axis(waveform)
        for stage in stages:
            for stage_layer in stage:
                x = stage_layer(x)
        embedding = pooling(x)
        super().__init__(inputs=waveform, outputs=embedding, **kwargs)

        # === Config ===
        self.first_filters = first_filters
        self.num_blocks = num_blocks
        self.layers_per_block = layers_per_block
        self.growth = growth
        self.kernel_size = kernel_size
        self.embedding_dim = embedding_dim
        self.contrastive_dim = contrastive_dim
        self.decimation = decimation
        self.leaky_relu_slope = leaky_relu_slope
        self.batch_norm_momentum = batch_norm_momentum
        self.batch_norm_epsilon = batch_norm_epsilon

    def encode(self, waveform, num_valid_samples=None, training=False):
        """The embedding of each file of a zero-padded batch, exactly as if it were alone.

        `encoder(waveform)` treats the whole row as audio: padding changes the activations
        near a file's end (through the convolutions' receptive field, ~50 ms for `jsqa`)
        and counts in the average pooling. Here every conv input is zeroed past the file's
        valid length at that layer's rate (which is what "same" padding does at the end of
        an unpadded file) and the pooling averages the valid frames only, so a file's
        embedding does not depend on what it is batched with (in inference mode: BatchNorm
        in training mode still takes its batch statistics over the padded frames too).

        Args:
            waveform: float [batch, samples], each row zero-padded past its valid length.
            num_valid_samples: int [batch]; None means every row is valid (plain call).
            training: BatchNorm mode.

        Returns:
            float [batch, embedding_dim].
        """
        if num_valid_samples is None:
            return self(waveform, training=training)
        lengths = ops.maximum(ops.cast(num_valid_samples, "int32"), 1)
        x = waveform
        for layer in self.layers[1:]:  # layers[0] is the InputLayer
            if isinstance(layer, keras.layers.GlobalAveragePooling1D):
                mask = self._time_mask(lengths, x)
                total = ops.sum(ops.cast(x, "float32") * ops.cast(mask, "float32"), axis=1)
                return ops.cast(total / ops.cast(lengths, "float32")[:, None], x.dtype)
            if isinstance(layer, (keras.layers.Conv1D, keras.layers.ZeroPadding1D)) and not (
                isinstance(layer, keras.layers.Conv1D) and layer.strides[0] == 2
            ):  # a strided conv's input was masked before its explicit padding
                x = x * self._time_mask(lengths, x)
            x = layer(x, training=training)
            decimates = isinstance(layer, keras.layers.MaxPooling1D) or (
                isinstance(layer, keras.layers.Conv1D) and layer.strides[0] == 2
            )
            if decimates:  # output i is centred on input 2i: ceil(length / 2) valid outputs
                lengths = (lengths + 1) // 2
        raise AssertionError("the encoder has no pooling layer")

    @staticmethod
    def _time_mask(lengths, x):
        """[batch, time, 1] mask of the valid frames, in x's dtype (x: [batch, time, ch])."""
        frames = ops.arange(ops.shape(x)[1], dtype="int32")
        return ops.cast(frames[None, :, None] < lengths[:, None, None], x.dtype)

    @property
    def total_decimation(self) -> int:
        return 2**self.num_blocks

    def macs_per_second(self, sample_rate: int = 16_000) -> float:
        """Multiply-accumulates of one forward pass over one second of audio."""
        channels = conv_channels(
            self.first_filters, self.num_blocks, self.layers_per_block, self.growth, self.embedding_dim
        )
        total, rate, inputs = 0.0, float(sample_rate), 1
        for index, filters in enumerate(channels):
            last_of_block = index % self.layers_per_block == self.layers_per_block - 1
            out_rate = rate / 2 if last_of_block and self.decimation == "stride" else rate
            total += out_rate * self.kernel_size * inputs * filters
            rate = rate / 2 if last_of_block else rate
            inputs = filters
        return total

    def get_config(self):
        return {
            "first_filters": self.first_filters,
            "num_blocks": self.num_blocks,
            "layers_per_block": self.layers_per_block,
            "growth": self.growth,
            "kernel_size": self.kernel_size,
            "embedding_dim": self.embedding_dim,
            "contrastive_dim": self.contrastive_dim,
            "decimation": self.decimation,
            "leaky_relu_slope": self.leaky_relu_slope,
            "batch_norm_momentum": self.batch_norm_momentum,
            "batch_norm_epsilon": self.batch_norm_epsilon,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> WaveformEncoder:
        """An encoder from a named preset (jsqa, cdpam, small, tiny), any argument overridden."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[preset], **overrides})
