"""A copy of a model that TFLite's dynamic-range int8 quantizes well: convolutions in time chunks.

Dynamic-range ("hybrid") int8 keeps activations in float and quantizes each convolution's
input on the fly, asymmetrically, with one scale per batch row (XNNPACK's and TFLite's own
kernels alike): for a Conv1D on [batch, time, channels], one scale for every frame and channel
of a whole clip. A loud moment (a click, a plosive, a clipped burst) sets that scale, and the
rest of the clip is rounded to a few levels; the rounding error grows layer by layer and
survives the average pooling (measured; the LeakyReLUs presumably bias it). Measured (README,
"Inference figures"): a 10 ms burst in a quiet 4 s clip moved the `small` encoder's int8
embedding by 23-34 % (1.2 % without it) and its MOS by up to 0.66; over the benchmark's
16 clips of 10 s, int8 moved `small`'s MOS by up to 0.14 (0.016 chunked) and `jsqa`'s by
0.49 (0.051 chunked); the int8 weights alone account for 0.013 on `small` (simulated).

`chunked_copy` returns a copy in which each Conv1D that `chunk_plan` picks (the rule: every
one whose kernel TFLite quantizes) computes its output in chunks of `chunk_frames` frames,
each chunk a row of the batch axis (with the `kernel_size - stride` input frames of context it
reads from the next one): the same sums as the plain convolution, but one int8 scale per
chunk, so each stretch of a clip is rounded on its own scale. A run of chunked convolutions
keeps the chunked layout from one to the next (`_ChunkChain`): one PAD and one GATHER into
the run, one GATHER (and a MUL that zeroes what lies outside the clip) per further
convolution, one GATHER out of it; a decimation halves the chunks down to
`MIN_CHUNK_FRAMES`, then neighbouring chunks merge. Builtin TFLite ops only, and every tensor keeps a static
size once the input is resized (see "chunks" below), so XNNPACK runs the convolutions
and the memory is planned as for the plain model. The extra work: the context,
`(kernel_size - stride) / (chunk_frames * stride)` of each convolution (5 % for kernels of 15
and chunks of 256), and one or two copies of each convolution's input.

Rounding the weights to int8 shifts each convolution's output on average, and the shifts add
up layer after layer (on the calibrated `jsqa`, the int8 weights alone moved the MOS by up to
0.051 of the 0.071 the int8 file was off by). `bias_corrections` cancels the shift of each
convolution that a BatchNorm follows, without data: the BatchNorm's moving mean is the
convolution's mean output, which gives its mean input, and the rounding error times that mean
input is the shift, taken off the bias (the bias correction of Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", 2019, with the mean input solved
from the statistics the model carries). The copy's convolutions use the corrected biases.

Used by `jsqa_tf.export.convert_tflite` for "int8"; the SavedModel and the other TFLite forms
are written from the model itself.
"""

from __future__ import annotations

import math

import keras

from jsqa_tf.models.student_encoder import MIN_ELEMENTS_QUANTIZED
from jsqa_tf.ranges import model_targets

CHUNK_FRAMES = 256
"""Output frames of a convolution per int8 scale: at 16 kHz 16 ms, at 1 kHz (after four
decimations) 256 ms. 64 to 1024 gave about the same MOS error on `small` (0.015-0.019,
simulated, 10 s clips); 4096 gave 0.041, one scale per clip 0.143."""

MIN_CHUNK_FRAMES = 128
"""In a run of chunked convolutions, a decimation halves the chunks down to this many output
frames; below it, neighbouring chunks are merged (`_ChunkChain`). `jsqa`: 256 frames at
16 kHz, 128 at 8, 4 and 2 kHz. Measured on the calibrated `jsqa` (2026-12-06, the benchmark's
16 clips of 10 s / `export --check`'s parity clips): 32 (halved at every decimation) 0.056 /
0.058 MOS, 64: 0.052 / 0.045, 128: 0.050 / 0.033, 256 (merged at every decimation) 0.065 /
0.014."""

MIN_CHUNK_RATE_HZ = 0
"""`chunk_plan`'s rate threshold: only convolutions whose input runs at this many frames per
second or more are chunked. 0: every rate. Measured (calibrated `jsqa`, 16 clips of 10 s,
2026-12-06, docs/design.md): chunking only the 16 kHz convolutions left a max |ΔMOS| of 0.31,
only those at 8 kHz or more 0.165, all 0.056 (none: 0.49); with the 16 and 8 kHz ones only,
the burst test's model was off by 0.23 MOS (tolerance 0.05)."""

RULE = "a Conv1D runs in chunks when TFLite quantizes its kernel (>= 1024 weights)" + (
    f" and its input runs at >= {MIN_CHUNK_RATE_HZ} frames/s" if MIN_CHUNK_RATE_HZ else ""
)
"""`chunk_plan`'s rule in words (the int8 contract's `int8_chunks.rule`)."""

MIN_QUANTIZED_ELEMENTS = MIN_ELEMENTS_QUANTIZED
"""TFLite's dynamic-range quantizer leaves a weight with fewer elements than this (1,024) in
float (its input then stays float too: chunking it changes nothing)."""


class ChunkedConv1D(keras.layers.Conv1D):
    """Conv1D computed in chunks of `chunk_frames` output frames folded into the batch axis.

    The output equals `keras.layers.Conv1D`'s with the same configuration and weights. Padding
    "same" (stride 1), "valid" and "causal" are chunked, channels last; any other
    configuration runs as a plain Conv1D. Not serialisable: it exists only in the copy that is
    converted to TFLite.

    Args:
        chunk_frames: output frames per chunk (one batch row, one int8 scale each).
        **kwargs: `keras.layers.Conv1D`'s configuration.
    """

    def __init__(self, chunk_frames: int = CHUNK_FRAMES, **kwargs):
        super().__init__(**kwargs)
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.chunk_frames = int(chunk_frames)

    def call(self, inputs):
        if not _fits(self, self.chunk_frames * self.strides[0]):
            return super().call(inputs)
        import tensorflow as tf  # the copy is converted by TensorFlow's TFLite converter

        chunks, carrier, _ = _start_chunks(tf, inputs, self, (0, 0), self.chunk_frames)
        outputs, carrier = _convolve_chunks(tf, chunks, carrier, self, (0, 0))
        return _unchunk(tf, outputs, carrier, tf.shape(inputs)[0])

    def get_config(self):
        return {**super().get_config(), "chunk_frames": self.chunk_frames}


def _sizes(tf, *sizes):
    """A 1-D int32 shape from ints and int32 scalars, by CONCATENATION (a PACK of the scalars,
    which `tf.stack` or a list would give, is not evaluated when the input is resized)."""
    return tf.concat([tf.reshape(tf.cast(size, tf.int32), [1]) for size in sizes], axis=0)


class StaticReshape(keras.layers.Reshape):
    """`keras.layers.Reshape` whose target shape reaches TFLite as a CONCATENATION, not a PACK.

    Keras's Reshape passes `(batch, *target_shape)` with the batch size read at run time: a
    PACK in TFLite, so its output and every tensor after it are dynamic (in the plain
    conversion of the encoder too: its `add_channel_axis`). Same output as Reshape.
    """

    def call(self, inputs):
        import tensorflow as tf

        return tf.reshape(inputs, _sizes(tf, tf.shape(inputs)[0], *self.target_shape))


def chunk_convolutions(model: keras.Model, chunk_frames: int = CHUNK_FRAMES, layers=None) -> keras.Model:
    """A functional copy of `model` (same weights) with every Conv1D named in `layers` (all,
    when None) a `ChunkedConv1D` and every Reshape a `StaticReshape`."""

    def clone(layer):
        config = layer.get_config()
        chosen = layers is None or layer.name in layers
        if type(layer) is keras.layers.Conv1D and layer.groups == 1 and chosen:
            return ChunkedConv1D(chunk_frames=chunk_frames, **config)
        if type(layer) is keras.layers.Reshape:
            return StaticReshape(**config)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def conv_input_rates(encoder: keras.Model, sample_rate: int = 16_000) -> dict[str, int]:
    """Input frames per second of every Conv1D of `encoder`, in Hz (rounded: the frames of a
    stride-2 convolution's zero padding count for nothing): the shapes of a 100 s input,
    computed symbolically (nothing runs)."""
    convs = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv1D)]
    if not convs:
        return {}
    seconds = 100
    probe = keras.Model(encoder.inputs, [layer.input for layer in convs])
    specs = probe.compute_output_spec(keras.KerasTensor((1, sample_rate * seconds)))
    specs = specs if isinstance(specs, list | tuple) else [specs]
    return {layer.name: int(round(spec.shape[1] / seconds)) for layer, spec in zip(convs, specs, strict=True)}


def chunk_plan(encoder: keras.Model, min_rate_hz: int = MIN_CHUNK_RATE_HZ) -> dict[str, dict]:
    """Which of `encoder`'s Conv1Ds the int8 copy computes in chunks, and why: the rule.

    A convolution is chunked when (1) TFLite quantizes its kernel (at least
    `MIN_QUANTIZED_ELEMENTS` weights: a smaller kernel stays float and so does its input: the
    encoders' first convolution, with one input channel) and (2) its input runs at
    `min_rate_hz` frames per second or more (by default every rate: chunking fewer costs
    accuracy, see `MIN_CHUNK_RATE_HZ`). Returns {conv name: {"chunked", "input_rate_hz",
    "quantized"}} in the layers' order.
    """
    plan = {}
    for layer_name, rate in conv_input_rates(encoder).items():
        layer = encoder.get_layer(layer_name)
        quantized = math.prod(int(dim) for dim in layer.kernel.shape) >= MIN_QUANTIZED_ELEMENTS
        plainly = type(layer) is keras.layers.Conv1D and layer.groups == 1
        plan[layer_name] = {
            "chunked": bool(quantized and plainly and rate >= min_rate_hz),
            "input_rate_hz": rate,
            "quantized": quantized,
        }
    return plan


def int8_rounded(kernel):
    """`kernel` as TFLite's dynamic-range quantizer stores it, back in float: symmetric int8,
    one scale per output channel (the last axis), max |w| / 127."""
    import numpy as np

    kernel = np.asarray(kernel, dtype=np.float64)
    scale = np.max(np.abs(kernel), axis=tuple(range(kernel.ndim - 1)), keepdims=True) / 127
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(np.round(kernel / scale), -127, 127) * scale


RIDGE = 0.03
"""`bias_corrections` solves for a convolution's mean input by ridge regression towards a prior,
damping the directions whose singular value is below `RIDGE` x the largest. Measured on the
test's small encoder (1 s clips), the largest error of the mean input against the one measured
on the clips: 0.0016 / 0.0041 / 0.012 (of ~0.35) for 0.03, against 0.0015 / 0.0009 / 0.16 with
plain least squares (a 16 x 16 kernel sum of condition 190 amplifies the edges' zeros) and
0.068 / 0.046 / 0.043 for the prior alone."""


def _mean_activation(batch_norm, activation):
    """The mean of LeakyReLU(z) for z ~ N(beta, gamma^2), per channel: what a BatchNorm (whose
    input has the moving statistics) followed by `activation` gives on average."""
    import numpy as np
    from scipy.special import erf

    gamma = np.maximum(np.abs(np.asarray(batch_norm.gamma, dtype=np.float64)), 1e-12)
    beta = np.asarray(batch_norm.beta, dtype=np.float64)
    slope = float(getattr(activation, "negative_slope", 0.0))
    z = beta / gamma
    positive = beta * 0.5 * (1 + erf(z / np.sqrt(2))) + gamma * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return slope * beta + (1 - slope) * positive  # E[LReLU(z)] = slope E[z] + (1 - slope) E[max(z, 0)]


def _prior_mean_input(layers, index, channels):
    """The mean input of `layers[index]` by `_mean_activation` when a BatchNorm and a LeakyReLU
    (through padding and decimation) feed it; else zeros."""
    import numpy as np

    activation = None
    for layer in reversed(layers[:index]):
        if isinstance(layer, keras.layers.ZeroPadding1D | keras.layers.MaxPooling1D):
            continue
        if activation is None and isinstance(layer, keras.layers.LeakyReLU):
            activation = layer
            continue
        if activation is not None and isinstance(layer, keras.layers.BatchNormalization):
            prior = _mean_activation(layer, activation)
            return prior if prior.shape == (channels,) else np.zeros(channels)
        break
    return np.zeros(channels)


def bias_corrections(encoder: keras.Model) -> dict:
    """{conv name: what to add to its bias} so that its int8 weights keep its mean output.

    For each Conv1D whose kernel TFLite quantizes and whose output a BatchNormalization reads
    (the `WaveformEncoder`'s and the students' blocks), with W the kernel summed over its taps
    ([in, out]): the BatchNorm's moving mean m is the convolution's mean output, W^T E[x] + b,
    which gives the mean input E[x] (ridge regression towards the mean that the BatchNorm and
    LeakyReLU before the convolution imply, `_prior_mean_input`, see `RIDGE`). The rounding
    error E of the kernel (`int8_rounded` - kernel, summed over taps) shifts the mean output
    by E^T E[x]: its negative is the correction. The taps that "same" padding puts past a clip's
    ends see zeros, not the mean: the correction holds away from them. A BatchNorm that never
    saw data (moving mean 0, variance 1) gives no correction.
    """
    import numpy as np

    corrections = {}
    layers = encoder.layers
    for index, (layer, following) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
        if not (
            isinstance(layer, keras.layers.Conv1D)
            and layer.use_bias
            and layer.groups == 1
            and layer.activation in (None, keras.activations.linear)
            and isinstance(following, keras.layers.BatchNormalization)
            and following.input is layer.output
            and following.axis in (-1, 2, [-1], [2])
        ):
            continue
        kernel = np.asarray(layer.kernel, dtype=np.float64)
        fresh = not np.any(following.moving_mean) and np.all(np.asarray(following.moving_variance) == 1)
        if kernel.size < MIN_QUANTIZED_ELEMENTS or fresh:  # fresh: its statistics say nothing
            continue
        summed = kernel.sum(axis=0)  # [in, out]
        prior = _prior_mean_input(layers, index, summed.shape[0])
        mean_output = np.asarray(following.moving_mean, dtype=np.float64) - np.asarray(layer.bias)
        residual = mean_output - summed.T @ prior
        u, singular, vt = np.linalg.svd(summed.T, full_matrices=False)
        damped = singular / (singular**2 + (RIDGE * singular[0]) ** 2)
        mean_input = prior + vt.T @ (damped * (u.T @ residual))
        error = (int8_rounded(kernel) - kernel).sum(axis=0)
        corrections[layer.name] = (-(error.T @ mean_input)).astype(np.float32)
    return corrections


class ChunkedRegressor:
    """What `jsqa_tf.export` serves of a `MOSRegressor` (`embed`, `head`, `variables`), with
    the convolutions `layers` names (default: by `chunk_plan`) in chunks.

    A `WaveformEncoder` (a chain of layers) runs layer by layer with the chunks kept from one
    chunked convolution to the next (`_ChunkChain`); any other encoder runs as a copy with the
    named convolutions `ChunkedConv1D`s (`chunk_convolutions`).

    Args:
        model: a `MOSRegressor`.
        chunk_frames: see `ChunkedConv1D`.
        layers: names of the Conv1Ds to chunk; None: `chunk_plan`'s.
        min_chunk_frames: in a run, chunks are halved at each decimation down to this many
            output frames, then merged (default `MIN_CHUNK_FRAMES`).
        bias_correction: the convolutions take `bias_corrections`' biases (in float the copy
            then differs from the model by them; in int8 they cancel the rounding's mean shift).
    """

    def __init__(
        self,
        model,
        chunk_frames: int = CHUNK_FRAMES,
        layers=None,
        min_chunk_frames: int | None = None,
        bias_correction: bool = True,
    ):
        from jsqa_tf.models import WaveformEncoder

        self.model = model
        self.chunk_frames = chunk_frames
        self.min_chunk_frames = MIN_CHUNK_FRAMES if min_chunk_frames is None else min_chunk_frames
        self.plan = chunk_plan(model.encoder)
        if layers is None:
            layers = [name for name, entry in self.plan.items() if entry["chunked"]]
        else:
            for name, entry in self.plan.items():
                entry["chunked"] = name in layers
        self.layers = list(layers)
        self.corrections = bias_corrections(model.encoder) if bias_correction else {}
        if isinstance(model.encoder, WaveformEncoder):
            self.encoder = _ChunkChain(
                model.encoder, chunk_frames, set(self.layers), self.min_chunk_frames, self.corrections
            )
            self.layers = self.encoder.chunked()  # a named convolution it cannot chunk runs plain
            for name, entry in self.plan.items():
                entry["chunked"] = name in self.layers
        else:
            self.encoder = chunk_convolutions(model.encoder, chunk_frames, set(self.layers))
            for name, correction in self.corrections.items():
                bias = self.encoder.get_layer(name).bias
                bias.assign(bias + correction)
        self.head = model.head
        self.embedding_width = model.embedding_width
        self.targets = model_targets(model)

    @property
    def variables(self):
        encoder = self.model.encoder if isinstance(self.encoder, _ChunkChain) else self.encoder
        return [*encoder.variables, *self.head.variables]

    def embed(self, waveform, training=False):
        embedding = self.encoder(waveform, training=training)
        return embedding[:, : self.embedding_width]  # "contrastive": the leading dimensions

    def contract_entry(self) -> dict:
        """The "int8_chunks" entry of the int8 TFLite contract: the rule and each conv's choice."""
        return {
            "chunk_frames": self.chunk_frames,
            "min_chunk_frames": self.min_chunk_frames,
            "rule": RULE,
            "layers": self.plan,
            "bias_corrected": sorted(self.corrections),
        }


class _ChunkChain:
    """A `WaveformEncoder`'s forward pass, layer by layer, with the named convolutions in chunks.

    Layouts: "plain" [batch, frames, channels], or "chunked" [batch * chunks, chunk,
    channels], row `b * chunks + c` holding frames `c * chunk ...` of clip `b` (frames past the
    clip's end hold anything: they are never read as audio). A run of chunked convolutions:

    - the first reads its input's chunks of `chunk_frames * stride` frames, each with its
      context, in one GATHER from the plain layout after a PAD (the convolution's zeros, and a
      `ZeroPadding1D` before it folded in);
    - BatchNorm and activations run on the chunks as they are;
    - a decimation (`MaxPooling1D(1, 2)`, a stride-2 convolution) halves the frames of every
      chunk, down to `min_chunk_frames`; below that, the next chunked convolution first
      merges neighbouring chunks (a free RESHAPE: the run starts with a number of chunks that
      every merge divides);
    - each next chunked convolution reads its chunks, with their context, in one GATHER from
      the chunked layout, and one MUL zeroes the frames outside the clip (its "same" zeros);
      a chunk too short for its context (or for a stride) ends the run and starts another;
    - any other layer gets the plain layout back: a RESHAPE and a GATHER of the valid frames.

    Sizes: the valid frame count is the length of a [1, frames, 1] slice of the run's input
    sliced as each layer slices time (the "carrier"), and the chunk count a SHAPE times
    constants, so every tensor keeps a size TFLite evaluates when the input is resized (see
    the chunk functions below, which `ChunkedConv1D` shares).
    """

    def __init__(
        self,
        encoder,
        chunk_frames: int,
        layers: set[str],
        min_chunk_frames: int | None = None,
        corrections: dict | None = None,
    ):
        self.encoder = encoder
        self.corrections = corrections or {}
        self.chunk_frames = int(chunk_frames)
        self.min_chunk_frames = MIN_CHUNK_FRAMES if min_chunk_frames is None else int(min_chunk_frames)
        self.chosen = layers
        self.steps = self._schedule()

    def _schedule(self) -> list[tuple]:
        """[(layer or None, action, details)] for the encoder's layers, decided on their
        configurations alone: "start" / "chain" (a chunked convolution; details: its padding,
        the merges), "keep" (a layer applied to the chunks), "unchunk", "reshape", "apply"."""
        steps, frames, pending, run = [], None, None, None  # frames: per chunk; None: plain
        layers = self.encoder.layers[1:]  # layers[0] is the InputLayer
        for index, layer in enumerate(layers):
            following = layers[index + 1] if index + 1 < len(layers) else None
            if isinstance(layer, keras.layers.ZeroPadding1D) and self._chosen(following, "valid"):
                pads = layer.padding
                pads = (pads, pads) if isinstance(pads, int) else tuple(int(p) for p in pads)
                if self._fits(following, frames, pads) or self._fits(following, None, pads):
                    pending = pads
                    continue
            if self._chosen(layer):
                pads = pending or (0, 0)
                if frames is not None and not self._fits(layer, frames, pads):
                    steps.append((None, "unchunk", None))  # a new run starts here
                    frames = None
                if self._fits(layer, frames, pads):
                    if frames is None:
                        run = {"merges": 1}  # every merge of the run, known before it runs
                        steps.append((layer, "start", {"pads": pads, "run": run}))
                        frames = self.chunk_frames * layer.strides[0]
                    else:
                        merge = self._merge(layer, frames)
                        run["merges"] *= merge
                        details = {"pads": pads, "merge": merge, "merged": run["merges"]}
                        steps.append((layer, "chain", details))
                        frames *= merge
                    frames //= layer.strides[0]
                    pending = None
                    continue
            if frames is not None and self._keeps_layout(layer, frames):
                steps.append((layer, "keep", None))
                frames //= 2 if isinstance(layer, keras.layers.MaxPooling1D) else 1
                continue
            if frames is not None:
                steps.append((None, "unchunk", None))
                frames = None
            steps.append((layer, "reshape" if isinstance(layer, keras.layers.Reshape) else "apply", None))
        if frames is not None:
            steps.append((None, "unchunk", None))
        return steps

    def chunked(self) -> list[str]:
        """The convolutions this pass runs in chunks."""
        return [layer.name for layer, action, _ in self.steps if action in ("start", "chain")]

    def _chosen(self, layer, padding: str | None = None) -> bool:
        return (
            type(layer) is keras.layers.Conv1D
            and layer.name in self.chosen
            and (padding is None or layer.padding == padding)
        )

    def _merge(self, layer, frames) -> int:
        """How many neighbouring chunks of `frames` become one input chunk of `layer`: so many
        that it outputs at least `min_chunk_frames` frames per chunk."""
        merge = 1
        while frames * merge // layer.strides[0] < min(self.min_chunk_frames, self.chunk_frames):
            merge *= 2
        return merge

    def _fits(self, layer, frames, pads) -> bool:
        """Whether `layer` runs on chunks of `frames` input frames (None: from the plain layout)."""
        frames = frames * self._merge(layer, frames) if frames else self.chunk_frames * layer.strides[0]
        return _fits(layer, frames, pads)

    @staticmethod
    def _keeps_layout(layer, frames) -> bool:
        if isinstance(layer, keras.layers.MaxPooling1D):
            return (
                layer.pool_size[0] == 1
                and layer.strides[0] == 2
                and layer.padding == "valid"
                and layer.data_format == "channels_last"
                and frames % 2 == 0
            )
        if isinstance(layer, keras.layers.BatchNormalization):
            return layer.axis in (-1, 2, [-1], [2])
        return isinstance(layer, keras.layers.LeakyReLU | keras.layers.ReLU | keras.layers.Activation)

    def __call__(self, waveform, training=False):
        import tensorflow as tf

        batch = tf.shape(waveform)[0]
        x, carrier, base, merges = waveform, None, None, 1
        for layer, action, details in self.steps:
            if action == "start":
                merges = details["run"]["merges"]
                x, carrier, base = _start_chunks(tf, x, layer, details["pads"], self.chunk_frames, merges)
                x, carrier = self._finish(tf, x, carrier, layer, details["pads"])
            elif action == "chain":
                if details["merge"] > 1:  # neighbouring chunks of one clip: one chunk (free)
                    x = tf.reshape(x, [-1, x.shape[1] * details["merge"], x.shape[-1]])
                count = base * (merges // details["merged"])
                x = self._chain(tf, x, carrier, layer, details["pads"], count, batch)
                x, carrier = self._finish(tf, x, carrier, layer, details["pads"])
            elif action == "keep":
                x = layer(x, training=training)
                if isinstance(layer, keras.layers.MaxPooling1D):
                    carrier = carrier[:, ::2]
            elif action == "unchunk":
                x = _unchunk(tf, x, carrier, batch)
            elif action == "reshape":  # Keras's target shape would be a PACK (`StaticReshape`)
                x = tf.reshape(x, _sizes(tf, batch, *layer.target_shape))
            else:
                x = layer(x, training=training)
                if layer.name in self.corrections:  # a convolution that runs plain
                    x = x + self.corrections[layer.name]
        return x

    def _chain(self, tf, x, carrier, layer, pads, count, batch):
        """From the chunks: one GATHER of the frames each chunk reads, one MUL that zeroes the
        frames outside the clip."""
        stride, span, left, _ = _geometry(layer, pads)
        step, channels = x.shape[1], x.shape[-1]
        context = span - stride
        frames = tf.shape(carrier)[1]
        source = tf.reshape(x, _sizes(tf, batch, -1, channels))  # [batch, chunks * step, ch]
        positions = tf.range(count)[:, None] * step + (tf.range(step + context) - left)[None, :]
        inside = tf.logical_and(positions >= 0, positions < frames)
        gathered = tf.gather(source, tf.clip_by_value(positions, 0, frames - 1), axis=1)
        gathered = gathered * tf.cast(inside, x.dtype)[:, :, None]
        return tf.reshape(gathered, [-1, step + context, channels])

    def _finish(self, tf, chunks, carrier, layer, pads):
        return _convolve_chunks(tf, chunks, carrier, layer, pads, self.corrections.get(layer.name, 0.0))


# --- chunks: what `ChunkedConv1D` and `_ChunkChain` share ------------------------------------
# Every size below is the shape of a tensor (SHAPE, STRIDED_SLICE), a product (MUL), a
# CONCATENATION of them (`_sizes`), or the length of a RANGE: all evaluated by TFLite as soon as
# the input is resized. A size that goes through a PACK, ADD, FLOOR_DIV or MAXIMUM, or a SLICE to
# a computed size, is known only when the op runs: every tensor after it is then dynamic:
# allocated apart and never reused (2.9 GB for one 10 s clip of `jsqa`, against 0.3 GB), and
# slow (7-9x slower on `small`, measured).


def _geometry(layer, pads=(0, 0)):
    """(stride, span: input frames one output reads, left and right zeros) of a Conv1D; `pads`
    are a `ZeroPadding1D`'s before a "valid" one, folded in."""
    stride = layer.strides[0]
    span = layer.dilation_rate[0] * (layer.kernel_size[0] - 1) + 1
    if layer.padding == "valid":
        left, right = pads
    else:  # "same" (stride 1), "causal": one output per input frame
        left = (span - 1) // 2 if layer.padding == "same" else span - 1
        right = span - 1 - left
    return stride, span, left, right


def _fits(layer, frames: int, pads=(0, 0)) -> bool:
    """Whether the Conv1D `layer` runs on chunks of `frames` input frames (each with the context
    it reads from the next chunk)."""
    stride, span, _, _ = _geometry(layer, pads)
    return (
        layer.groups == 1
        and layer.data_format == "channels_last"
        and (layer.padding in ("valid", "causal") or (layer.padding == "same" and stride == 1))
        and (pads == (0, 0) or layer.padding == "valid")
        and frames % stride == 0
        and stride <= span <= frames + stride  # context within the next chunk
    )


def _start_chunks(tf, x, layer, pads, chunk_frames: int, merges: int = 1):
    """From [batch, frames, channels]: PAD (the convolution's zeros, and room for the last
    chunk's context), one GATHER of each chunk's `chunk_frames * stride + context` input frames.
    Returns the chunks [batch * chunks, step + context, channels], the carrier (a [1, frames, 1]
    slice of `x`: its length is the valid frame count) and the chunk count over `merges` (a run
    starts with a multiple of `merges` chunks, so that every merge of neighbouring chunks pairs
    chunks of one clip)."""
    stride, span, left, right = _geometry(layer, pads)
    step = chunk_frames * stride
    context = span - stride
    carrier = x[:1, :, :1]
    padded = tf.pad(x, [[0, 0], [left, right + step * merges + step], [0, 0]])
    # ceil(output frames / (chunk_frames * merges)), the length of a strided slice
    base = tf.shape(padded[:1, span - 1 + step * merges + step :: step * merges, :1])[1]
    indices = tf.range(base * merges)[:, None] * step + tf.range(step + context)[None, :]
    gathered = tf.gather(padded, indices, axis=1)  # [batch, chunks, step + context, ch]
    return tf.reshape(gathered, [-1, step + context, x.shape[-1]]), carrier, base


def _convolve_chunks(tf, chunks, carrier, layer, pads, correction=0.0):
    """The convolution of [batch * chunks, step + context, ch] chunks (its bias plus
    `correction`), and the carrier sliced as the convolution slices time."""
    stride, span, left, right = _geometry(layer, pads)
    outputs = tf.nn.convolution(
        chunks, layer.kernel, strides=stride, padding="VALID", dilations=layer.dilation_rate[0]
    )  # [batch * chunks, chunk_frames, filters]
    if layer.use_bias:
        outputs = outputs + layer.bias + correction
    if layer.activation is not None:
        outputs = layer.activation(outputs)
    if left + right != span - 1:  # with `span - 1` zeros in all ("same"), a frame per stride
        carrier = tf.pad(carrier, [[0, 0], [left, right], [0, 0]])[:, span - 1 :, :]
    return outputs, (carrier[:, ::stride] if stride > 1 else carrier)


def _unchunk(tf, x, carrier, batch):
    """[batch * chunks, chunk, channels] -> [batch, frames, channels]: a free RESHAPE, then one
    GATHER of the valid frames (the carrier's length)."""
    x = tf.reshape(x, _sizes(tf, batch, -1, x.shape[-1]))
    return tf.gather(x, tf.range(tf.shape(carrier)[1]), axis=1)


def chunked_copy(
    model,
    chunk_frames: int = CHUNK_FRAMES,
    layers=None,
    min_chunk_frames: int | None = None,
    bias_correction: bool = True,
) -> ChunkedRegressor:
    """The copy of a `MOSRegressor` to convert to dynamic-range int8 TFLite."""
    return ChunkedRegressor(model, chunk_frames, layers, min_chunk_frames, bias_correction)
