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

`chunked_copy` returns a copy whose every Conv1D computes its output in chunks of
`chunk_frames` frames, each chunk a row of the batch axis (with the `kernel_size - stride`
input frames of context it reads from the next one): the same sums as the plain convolution,
but one int8 scale per chunk, so each stretch of a clip is rounded on its own scale. Builtin
TFLite ops only (PAD, RANGE, GATHER, RESHAPE around each CONV_2D), and every tensor keeps a
static size once the input is resized (see `ChunkedConv1D.call`), so XNNPACK runs the
convolutions and the memory is planned as for the plain model. The extra work: the context,
`(kernel_size - stride) / (chunk_frames * stride)` of each convolution (5 % for kernels of 15
and chunks of 256), and copying each convolution's input and output once more.

Used by `jsqa_tf.export.convert_tflite` for "int8"; the SavedModel and the other TFLite forms
are written from the model itself.
"""

from __future__ import annotations

import keras

CHUNK_FRAMES = 256
"""Output frames of a convolution per int8 scale: at 16 kHz 16 ms, at 1 kHz (after four
decimations) 256 ms. 64 to 1024 gave about the same MOS error on `small` (0.015-0.019,
simulated, 10 s clips); 4096 gave 0.041, one scale per clip 0.143."""


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

    def _span(self) -> int:
        """Input frames that one output reads."""
        return self.dilation_rate[0] * (self.kernel_size[0] - 1) + 1

    def _chunkable(self) -> bool:
        stride = self.strides[0]
        return (
            self.data_format == "channels_last"
            and (self.padding in ("valid", "causal") or (self.padding == "same" and stride == 1))
            and stride <= self._span() <= self.chunk_frames * stride  # context within one chunk
        )

    def call(self, inputs):
        if not self._chunkable():
            return super().call(inputs)
        import tensorflow as tf  # the copy is converted by TensorFlow's TFLite converter

        stride, span = self.strides[0], self._span()
        step = self.chunk_frames * stride  # input frames between chunk starts
        context = span - stride  # input frames a chunk reads from the next one
        # Every size below is the shape of a tensor (SHAPE, STRIDED_SLICE), a product (MUL), a
        # CONCATENATION of them (`_sizes`), or the length of a RANGE: all evaluated by TFLite as
        # soon as the input is resized. A size that goes through a PACK, ADD, FLOOR_DIV or
        # MAXIMUM, or a SLICE to a computed size, is known only when the op runs: every tensor
        # after it is then dynamic: allocated apart and never reused (2.9 GB for one 10 s clip
        # of `jsqa`, against 0.3 GB now), and slow (7-9x slower on `small`, measured).
        if self.padding == "valid":
            frames = tf.shape(inputs[:1, span - 1 :: stride, :1])[1]
            left = 0
        else:  # "same" (stride 1), "causal": one output per input frame
            frames = tf.shape(inputs)[1]
            left = (span - 1) // 2 if self.padding == "same" else span - 1
        right = span - 1 - left if self.padding != "valid" else 0
        # The convolution's own zeros, and `step` more: room for the last chunk's context.
        padded = tf.pad(inputs, [[0, 0], [left, right + step], [0, 0]])
        # len(padded[span - 1 + step :: step]): the chunks of `chunk_frames` outputs. One GATHER
        # copies each chunk's `step + context` input frames: [batch, chunks, step + context, ch].
        num_chunks = tf.shape(padded[:1, span - 1 + step :: step, :1])[1]
        frame_indices = tf.range(num_chunks)[:, None] * step + tf.range(step + context)[None, :]
        chunks = tf.gather(padded, frame_indices, axis=1)
        chunks = tf.reshape(chunks, [-1, step + context, inputs.shape[-1]])
        outputs = tf.nn.convolution(
            chunks, self.kernel, strides=stride, padding="VALID", dilations=self.dilation_rate[0]
        )  # [batch * chunks, chunk_frames, filters]
        outputs = tf.reshape(outputs, _sizes(tf, tf.shape(inputs)[0], -1, self.filters))
        outputs = tf.gather(outputs, tf.range(frames), axis=1)
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

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


def chunk_convolutions(model: keras.Model, chunk_frames: int = CHUNK_FRAMES) -> keras.Model:
    """A functional copy of `model` (same weights) with every Conv1D a `ChunkedConv1D` and
    every Reshape a `StaticReshape`."""

    def clone(layer):
        config = layer.get_config()
        if type(layer) is keras.layers.Conv1D and layer.groups == 1:
            return ChunkedConv1D(chunk_frames=chunk_frames, **config)
        if type(layer) is keras.layers.Reshape:
            return StaticReshape(**config)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


class ChunkedRegressor:
    """What `jsqa_tf.export` serves of a `MOSRegressor` (`embed`, `head`, `variables`), with
    the encoder's convolutions chunked (`chunk_convolutions`).

    Args:
        model: a `MOSRegressor`.
        chunk_frames: see `ChunkedConv1D`.
    """

    def __init__(self, model, chunk_frames: int = CHUNK_FRAMES):
        self.model = model
        self.chunk_frames = chunk_frames
        self.encoder = chunk_convolutions(model.encoder, chunk_frames)
        self.head = model.head
        self.embedding_width = model.embedding_width
        self.targets = tuple(getattr(model, "targets", ("mos",)))

    @property
    def variables(self):
        return [*self.encoder.variables, *self.head.variables]

    def embed(self, waveform, training=False):
        embedding = self.encoder(waveform, training=training)
        return embedding[:, : self.embedding_width]  # "contrastive": the leading dimensions


def chunked_copy(model, chunk_frames: int = CHUNK_FRAMES) -> ChunkedRegressor:
    """The copy of a `MOSRegressor` to convert to dynamic-range int8 TFLite."""
    return ChunkedRegressor(model, chunk_frames)
