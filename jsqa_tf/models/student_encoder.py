"""The on-device student encoder: a log-mel front end in the graph and a small 2-D CNN.

Issue 9: a distilled student that reproduces a fine-tuned teacher's MOS on a phone. The design
and its measured alternative (a strided raw-waveform front end) are compared in the README
("The student"). Both are built here (`front_end`), so the benchmark measures both.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

MIN_ELEMENTS_QUANTIZED = 1024
"""TFLite's dynamic-range quantizer leaves a weight with fewer elements than this in float."""

STUDENT_PRESETS = {
    # The chosen design: 40 log-mel bands of 16 ms Hann windows (256-point FFT) every 10 ms,
    # then a MobileNet-style depthwise-separable 2-D CNN that halves time and frequency three
    # times (100 -> 12.5 frames/s, 40 -> 5 bands) and widens 16 -> 128 channels.
    "student": dict(
        front_end="log_mel",
        num_mel_bins=40,
        stft_window_samples=256,
        stem_filters=16,
        block_filters=(32, 64, 64, 128, 128),
        block_strides=(1, 2, 1, 2, 1),
        embedding_dim=128,
    ),
    # Measured variant: NISQA's 48 bands from 32 ms windows (512-point FFT: twice the FFT work).
    "student-w512": dict(
        front_end="log_mel",
        num_mel_bins=48,
        stft_window_samples=512,
        stem_filters=16,
        block_filters=(32, 64, 64, 128, 128),
        block_strides=(1, 2, 1, 2, 1),
        embedding_dim=128,
    ),
    # The measured alternative: a strided conv on the raw waveform (32-sample kernels every 16
    # samples: 1,000 frames/s), then the same separable blocks along time only.
    "student-waveform": dict(
        front_end="waveform",
        stem_filters=24,
        block_filters=(32, 64, 64, 128, 128),
        block_strides=(2, 2, 2, 2, 1),
        embedding_dim=128,
    ),
    # For tests: the chosen design at a quarter of the width.
    "student-tiny": dict(
        front_end="log_mel",
        num_mel_bins=32,
        stft_window_samples=256,
        stem_filters=8,
        block_filters=(16, 32),
        block_strides=(2, 2),
        embedding_dim=32,
    ),
}
FRONT_ENDS = ("log_mel", "waveform")


def mel_matrix(
    num_mel_bins: int, fft_length: int, sample_rate: int, low_hz: float, high_hz: float
) -> np.ndarray:
    """HTK-style triangular mel filters, peak 1: float64 [fft_length // 2 + 1, num_mel_bins]."""

    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    edges_hz = 700.0 * (10 ** (np.linspace(to_mel(low_hz), to_mel(high_hz), num_mel_bins + 2) / 2595.0) - 1)
    bins_hz = np.arange(fft_length // 2 + 1) * sample_rate / fft_length
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bins_hz[:, None] - lower) / (centre - lower)
    falling = (upper - bins_hz[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def mel_chunks(matrix: np.ndarray, max_elements: int = MIN_ELEMENTS_QUANTIZED - 1):
    """Splits a mel matrix into [(first_bin, end_bin, weights [end - first, bands])] over
    consecutive bands, each block under `max_elements` (so no quantizer touches it) and
    spanning only the bins its bands cover (the matrix is ~95 % zeros)."""
    support = [np.nonzero(matrix[:, band])[0] for band in range(matrix.shape[1])]
    if any(len(bins) == 0 for bins in support):
        raise ValueError("a mel band covers no FFT bin: fewer bands or a longer window")
    chunks, first_band = [], 0
    while first_band < matrix.shape[1]:
        last_band = first_band
        while last_band + 1 < matrix.shape[1]:
            bins = support[last_band + 1][-1] + 1 - support[first_band][0]
            if bins * (last_band + 2 - first_band) > max_elements:
                break
            last_band += 1
        start, end = support[first_band][0], support[last_band][-1] + 1
        chunks.append((int(start), int(end), matrix[start:end, first_band : last_band + 1]))
        first_band = last_band + 1
    return chunks


@keras.saving.register_keras_serializable(package="jsqa_tf")
class LogMelSpectrogram(keras.layers.Layer):
    """Waveform [batch, samples] -> log mel power [batch, samples // hop_samples, num_mel_bins].

    Frame i is the Hann-windowed samples [i·hop, i·hop + window) (the end is zero-padded by
    window - hop samples, so a file of n samples has exactly n // hop frames, and the frames a
    zero-padded batch adds past a file's end are the only ones that differ). The power
    spectrum (`keras.ops.stft`: RFFT2D in TFLite) is projected on the mel bands in small
    blocks over the bins each band covers (`mel_chunks`): every block has under 1,024
    elements, so dynamic-range int8 conversion keeps the projection in float (a quantized
    matmul would see a power spectrum spanning 60+ dB with one int8 scale per frame); log
    compression then bounds the range before the first quantized op.

    Args:
        num_mel_bins: mel bands.
        window_samples: STFT window and FFT length (a power of two).
        hop_samples: STFT hop.
        sample_rate: Hz.
        low_hz, high_hz: edges of the lowest and highest band.
        log_offset: added to the mel power before the log: the floor. 1e-3 is ~66 dB below
            the peak bin of a full-scale sine (256-point window). On the `student` preset
            1e-6 gave 1.7-2.2x the int8 error (max |dMOS| over 24 demo clips at 4 levels,
            3 paired seeds; README "The on-device student"); not so on `student-w512`.
    """

    def __init__(
        self,
        num_mel_bins: int = 48,
        window_samples: int = 512,
        hop_samples: int = 160,
        sample_rate: int = 16_000,
        low_hz: float = 20.0,
        high_hz: float = 8_000.0,
        log_offset: float = 1e-3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if window_samples & (window_samples - 1) or not 0 < hop_samples <= window_samples:
            raise ValueError(
                f"window_samples must be a power of two >= hop_samples, got {window_samples}, {hop_samples}"
            )
        self.num_mel_bins = num_mel_bins
        self.window_samples = window_samples
        self.hop_samples = hop_samples
        self.sample_rate = sample_rate
        self.low_hz = low_hz
        self.high_hz = high_hz
        self.log_offset = log_offset
        matrix = mel_matrix(num_mel_bins, window_samples, sample_rate, low_hz, high_hz)
        self.chunks = [(start, end, weights.astype("float32")) for start, end, weights in mel_chunks(matrix)]
        self.num_mel_weights = sum(weights.size for _, _, weights in self.chunks)

    def num_frames(self, num_samples):
        return num_samples // self.hop_samples

    def call(self, waveform):
        waveform = ops.pad(
            ops.cast(waveform, "float32"), [[0, 0], [0, self.window_samples - self.hop_samples]]
        )
        real, imag = ops.stft(
            waveform, self.window_samples, self.hop_samples, self.window_samples, window="hann", center=False
        )
        power = real * real + imag * imag  # [batch, frames, window // 2 + 1]
        mel = ops.concatenate(
            [ops.matmul(power[:, :, start:end], weights) for start, end, weights in self.chunks], axis=-1
        )
        return ops.cast(ops.log(mel + self.log_offset), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        frames = None if input_shape[1] is None else input_shape[1] // self.hop_samples
        return (input_shape[0], frames, self.num_mel_bins)

    def get_config(self):
        return {
            **super().get_config(),
            "num_mel_bins": self.num_mel_bins,
            "window_samples": self.window_samples,
            "hop_samples": self.hop_samples,
            "sample_rate": self.sample_rate,
            "low_hz": self.low_hz,
            "high_hz": self.high_hz,
            "log_offset": self.log_offset,
        }


_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
_PADDINGS = (keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D)


@keras.saving.register_keras_serializable(package="jsqa_tf")
class StudentEncoder(keras.Model):
    """16 kHz waveform -> embedding, sized for a phone (~0.01 GMAC per second of audio).

    Front end "log_mel" (the chosen design): `LogMelSpectrogram` (100 frames/s), BatchNorm
    per band, then a [time, band] image; a 3×3 stride-2 stem conv. Front end "waveform" (the
    measured alternative): a conv of `2·waveform_hop_samples` taps every `waveform_hop_samples`
    samples on the raw waveform, then a [time, 1] image. Then depthwise-separable blocks
    (MobileNet v1): depthwise 3×3 (3×1 on the waveform path) with the block's stride in time
    (and in frequency on the log-mel path), BatchNorm, ReLU, pointwise 1×1 to the block's
    width, BatchNorm, ReLU; a last pointwise conv to `embedding_dim`; global average pooling.
    Every conv with a kernel longer than one frame is explicitly zero-padded, centred, and
    "valid" (output i centred on input stride·i whatever the input length), so `encode` can
    mask a padded batch exactly (as `WaveformEncoder` does).

    Args:
        front_end: "log_mel" or "waveform".
        num_mel_bins, stft_window_samples, stft_hop_samples, low_hz, high_hz, log_offset:
            the log-mel front end (`LogMelSpectrogram`).
        waveform_hop_samples: stride of the waveform front end's conv (its kernel is twice).
        stem_filters: channels of the stem conv.
        block_filters: pointwise width of each separable block.
        block_strides: time stride of each block (1 or 2).
        embedding_dim: channels of the last pointwise conv = size of the embedding.
        contrastive_dim: leading embedding dimensions a contrastive loss sees (default half).
        kernel_size: depthwise kernel along time (and frequency on the log-mel path), odd.
        batch_norm_momentum, batch_norm_epsilon: of every BatchNorm.
        sample_rate: Hz of the input.
    """

    def __init__(
        self,
        front_end: str = "log_mel",
        num_mel_bins: int = 48,
        stft_window_samples: int = 512,
        stft_hop_samples: int = 160,
        low_hz: float = 20.0,
        high_hz: float = 8_000.0,
        log_offset: float = 1e-3,
        waveform_hop_samples: int = 16,
        stem_filters: int = 16,
        block_filters: tuple[int, ...] = (32, 64, 64, 128, 128),
        block_strides: tuple[int, ...] = (1, 2, 1, 2, 1),
        embedding_dim: int = 128,
        contrastive_dim: int | None = None,
        kernel_size: int = 3,
        batch_norm_momentum: float = 0.9,
        batch_norm_epsilon: float = 1e-3,
        sample_rate: int = 16_000,
        **kwargs,
    ):
        if front_end not in FRONT_ENDS:
            raise ValueError(f"front_end must be one of {FRONT_ENDS}, not {front_end!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if len(block_filters) != len(block_strides) or not set(block_strides) <= {1, 2}:
            raise ValueError(f"one stride (1 or 2) per block: {block_filters}, {block_strides}")
        contrastive_dim = contrastive_dim or embedding_dim // 2
        if not 0 < contrastive_dim <= embedding_dim:
            raise ValueError(f"contrastive_dim must be in (0, {embedding_dim}], got {contrastive_dim}")
        log_mel = front_end == "log_mel"
        half = kernel_size // 2
        # the image's frequency axis: kernels, strides and padding along it
        freq_kernel, freq_half = (kernel_size, half) if log_mel else (1, 0)

        def norm_act(name):
            return [
                keras.layers.BatchNormalization(
                    momentum=batch_norm_momentum, epsilon=batch_norm_epsilon, name=f"{name}_bn"
                ),
                keras.layers.ReLU(name=f"{name}_act"),
            ]

        # === Layers ===
        if log_mel:
            front = [
                LogMelSpectrogram(
                    num_mel_bins,
                    stft_window_samples,
                    stft_hop_samples,
                    sample_rate,
                    low_hz,
                    high_hz,
                    log_offset,
                    name="log_mel",
                ),
                keras.layers.BatchNormalization(
                    momentum=batch_norm_momentum, epsilon=batch_norm_epsilon, name="log_mel_norm"
                ),
                keras.layers.Reshape((-1, num_mel_bins, 1), name="add_channel_axis"),
                keras.layers.ZeroPadding2D(((half, half), (half, half)), name="stem_pad"),
                keras.layers.Conv2D(stem_filters, kernel_size, strides=2, use_bias=False, name="stem"),
                *norm_act("stem"),
            ]
        else:
            kernel = 2 * waveform_hop_samples
            front = [
                keras.layers.Reshape((-1, 1), name="add_channel_axis"),
                keras.layers.ZeroPadding1D((0, kernel - waveform_hop_samples), name="stem_pad"),
                keras.layers.Conv1D(
                    stem_filters, kernel, strides=waveform_hop_samples, use_bias=False, name="stem"
                ),
                *norm_act("stem"),
                keras.layers.Reshape((-1, 1, stem_filters), name="add_band_axis"),
            ]
        blocks = []
        for index, (filters, stride) in enumerate(zip(block_filters, block_strides, strict=True)):
            name = f"block{index + 1}"
            blocks += [
                keras.layers.ZeroPadding2D(((half, half), (freq_half, freq_half)), name=f"{name}_pad"),
                keras.layers.DepthwiseConv2D(
                    (kernel_size, freq_kernel),
                    strides=(stride, stride if log_mel else 1),
                    use_bias=False,
                    name=f"{name}_depthwise",
                ),
                *norm_act(f"{name}_depthwise"),
                keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pointwise"),
                *norm_act(f"{name}_pointwise"),
            ]
        blocks += [
            keras.layers.Conv2D(embedding_dim, 1, use_bias=False, name="embedding_conv"),
            *norm_act("embedding_conv"),
        ]
        pooling = keras.layers.GlobalAveragePooling2D(name="pooling")

        # === Functional Model ===
        waveform = keras.Input(shape=(None,), name="waveform")
        x = waveform
        for layer in front + blocks:
            x = layer(x)
        embedding = pooling(x)
        super().__init__(inputs=waveform, outputs=embedding, **kwargs)

        # === Config ===
        self.front_end = front_end
        self.num_mel_bins = num_mel_bins
        self.stft_window_samples = stft_window_samples
        self.stft_hop_samples = stft_hop_samples
        self.low_hz = low_hz
        self.high_hz = high_hz
        self.log_offset = log_offset
        self.waveform_hop_samples = waveform_hop_samples
        self.stem_filters = stem_filters
        self.block_filters = tuple(block_filters)
        self.block_strides = tuple(block_strides)
        self.embedding_dim = embedding_dim
        self.contrastive_dim = contrastive_dim
        self.kernel_size = kernel_size
        self.batch_norm_momentum = batch_norm_momentum
        self.batch_norm_epsilon = batch_norm_epsilon
        self.sample_rate = sample_rate

    def encode(self, waveform, num_valid_samples=None, training=False):
        """The embedding of each file of a zero-padded batch, exactly as if it were alone.

        As `WaveformEncoder.encode`: the waveform is zeroed past each file's length, every
        conv's (or its padding's) input is zeroed past the file's valid frames at that layer's
        rate, and the pooling averages the valid frames only. A frame is valid when the file
        alone has it: n // hop STFT frames (or waveform-stem frames), then
        (length + padding - kernel) // stride + 1 after each conv. In training mode BatchNorm
        still takes its batch statistics over the padded frames too (as in `WaveformEncoder`).

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
        x, padding = waveform, (0, 0)
        for layer in self.layers[1:]:  # layers[0] is the InputLayer
            if isinstance(layer, keras.layers.GlobalAveragePooling2D):
                mask = ops.cast(self._time_mask(lengths, x), "float32")
                total = ops.sum(ops.cast(x, "float32") * mask, axis=(1, 2))
                count = ops.cast(lengths * ops.shape(x)[2], "float32")[:, None]
                return ops.cast(total / count, x.dtype)
            if isinstance(layer, LogMelSpectrogram):
                x = layer(x * self._time_mask(lengths, x))
                lengths = ops.maximum(layer.num_frames(lengths), 1)
                continue
            if isinstance(layer, _PADDINGS):
                x = x * self._time_mask(lengths, x)
                padding = layer.padding[0] if isinstance(layer, keras.layers.ZeroPadding2D) else layer.padding
            elif isinstance(layer, _CONVS):
                kernel, stride = layer.kernel_size[0], layer.strides[0]
                if kernel > 1 and padding == (0, 0):
                    x = x * self._time_mask(lengths, x)
                x = layer(x, training=training)
                lengths = ops.maximum((lengths + sum(padding) - kernel) // stride + 1, 1)
                padding = (0, 0)
                continue
            x = layer(x, training=training)
        raise AssertionError("the encoder has no pooling layer")

    @staticmethod
    def _time_mask(lengths, x):
        """[batch, time, 1, ...] mask of the valid frames, in x's dtype (x: [batch, time, ...])."""
        frames = ops.arange(ops.shape(x)[1], dtype="int32")
        mask = frames[None, :] < lengths[:, None]
        return ops.cast(ops.reshape(mask, (-1, ops.shape(x)[1]) + (1,) * (len(x.shape) - 2)), x.dtype)

    def macs_per_second(self, sample_rate: int | None = None) -> float:
        """Multiply-accumulates of one forward pass over one second of audio: every conv, the
        STFT window and mel projection, and an FFT estimate ((N/2)·log2 N per frame)."""
        rate, total = float(sample_rate or self.sample_rate), 0.0
        for layer in self.layers[1:]:
            if isinstance(layer, LogMelSpectrogram):
                rate /= layer.hop_samples
                window = layer.window_samples
                total += rate * (window + window / 2 * math.log2(window) + layer.num_mel_weights)
            elif isinstance(layer, _CONVS):
                rate /= layer.strides[0]
                output_shape = layer.output.shape
                bands = output_shape[2] if len(output_shape) == 4 else 1
                taps = int(np.prod(layer.kernel_size)) * layer.input.shape[-1]
                per_frame = (
                    taps if isinstance(layer, keras.layers.DepthwiseConv2D) else taps * output_shape[-1]
                )
                total += rate * bands * per_frame
        return total

    def get_config(self):
        return {
            "front_end": self.front_end,
            "num_mel_bins": self.num_mel_bins,
            "stft_window_samples": self.stft_window_samples,
            "stft_hop_samples": self.stft_hop_samples,
            "low_hz": self.low_hz,
            "high_hz": self.high_hz,
            "log_offset": self.log_offset,
            "waveform_hop_samples": self.waveform_hop_samples,
            "stem_filters": self.stem_filters,
            "block_filters": list(self.block_filters),
            "block_strides": list(self.block_strides),
            "embedding_dim": self.embedding_dim,
            "contrastive_dim": self.contrastive_dim,
            "kernel_size": self.kernel_size,
            "batch_norm_momentum": self.batch_norm_momentum,
            "batch_norm_epsilon": self.batch_norm_epsilon,
            "sample_rate": self.sample_rate,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> StudentEncoder:
        """A student from a named preset (`STUDENT_PRESETS`), any argument overridden."""
        if preset not in STUDENT_PRESETS:
            raise ValueError(f"unknown student preset {preset!r}; one of {sorted(STUDENT_PRESETS)}")
        return cls(**{**STUDENT_PRESETS[preset], **overrides})
