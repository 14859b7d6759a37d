"""Functional building blocks shared by the IMHN and the top-down heads.

Every block is a *function* that composes standard Keras layers on a tensor
(B, H, W, C) -> (B, H', W', C'). They take the Keras module ``K`` as an argument
so that the same code builds a Keras 3 model and its tf_keras twin for
quantisation-aware training (tfmot only quantizes flat functional graphs of
standard layers: no custom Layer subclasses, no nested models; docs/tf_stack_notes.md §2).
The custom layers are :class:`DepthToSpace` (sub-pixel rearrangement), with a
tf_keras twin from :func:`depth_to_space_class`, and :class:`FusedBatchNormalization`
(Keras 3's BatchNormalization computed by TensorFlow's fused kernel; tf_keras'
own layer is fused already, so the twin keeps the standard layer).

Conventions of the Simple Pose reference network (``docs/method_bottom_up.md`` §3,
§3.1): BatchNorm momentum 0.9 / eps 1e-5 (PyTorch's 0.1 / 1e-5), LeakyReLU
with slope 0.01 (Keras' default 0.3 would be wrong), conv kernels drawn from
N(0, 0.001^2) with zero biases, Dense weights from N(0, 0.01^2).
"""
from __future__ import annotations

import keras

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
LEAKY_SLOPE = 0.01
CONV_STD = 0.001
DENSE_STD = 0.01


def is_keras3(K) -> bool:
    """True for Keras 3 (``keras``), False for tf_keras (which has no ``ops``)."""
    return hasattr(K, "ops")


# --------------------------------------------------------------- DepthToSpace
@keras.saving.register_keras_serializable(package="keras_pose")
class DepthToSpace(keras.layers.Layer):
    """Sub-pixel rearrangement (B, h, w, C*r^2) -> (B, h*r, w*r, C).

    TF's DCR order: output (y*r + i, x*r + j, c) reads input channel
    (i*r + j)*C + c (``docs/method_top_down.md`` §2.3; PyTorch's PixelShuffle differs).
    A layer rather than a bare op so tfmot can annotate it with a no-op
    QuantizeConfig (a ``tf.nn.depth_to_space`` TFOpLambda breaks tfmot's clone).
    """

    def __init__(self, block_size: int, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)
        if self.block_size < 1:
            raise ValueError(f"DepthToSpace: block_size must be >= 1, got {block_size}")

    def call(self, inputs):
        if self.block_size == 1:
            return inputs
        return keras.ops.depth_to_space(inputs, self.block_size, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        r = self.block_size
        return (b, None if h is None else h * r, None if w is None else w * r, c // (r * r))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


_TF_KERAS_D2S = {}


def depth_to_space_class(K):
    """The DepthToSpace layer class for Keras module ``K`` (keras or tf_keras).

    The tf_keras class is created once per module and cached, because tfmot's
    ``isinstance`` checks need the very class object that built the model.
    """
    if is_keras3(K):
        return DepthToSpace
    key = id(K)
    if key not in _TF_KERAS_D2S:
        import tensorflow as tf

        class TFKerasDepthToSpace(K.layers.Layer):
            __doc__ = DepthToSpace.__doc__

            def __init__(self, block_size, **kwargs):
                super().__init__(**kwargs)
                self.block_size = int(block_size)

            def call(self, inputs):
                if self.block_size == 1:
                    return inputs
                return tf.nn.depth_to_space(inputs, self.block_size)

            def compute_output_shape(self, input_shape):
                b, h, w, c = tf.TensorShape(input_shape).as_list()
                r = self.block_size
                return tf.TensorShape(
                    [b, None if h is None else h * r, None if w is None else w * r, c // (r * r)])

            def get_config(self):
                return {**super().get_config(), "block_size": self.block_size}

        # Same public name as the Keras 3 class, so quantize_scope({"DepthToSpace": cls}) works.
        TFKerasDepthToSpace.__name__ = TFKerasDepthToSpace.__qualname__ = "DepthToSpace"
        _TF_KERAS_D2S[key] = K.utils.register_keras_serializable(package="keras_pose")(
            TFKerasDepthToSpace)
    return _TF_KERAS_D2S[key]


def with_fixed_batch(model, batch_size: int):
    """Flat clone of a Keras 3 ``model`` on a fixed-batch input (weights copied).

    A static batch dimension lets TFLite drop SHAPE/STRIDED_SLICE/PACK ops
    (docs/tf_stack_notes.md §3). Cloning, not calling, keeps the graph flat.
    """
    inp = keras.Input(shape=tuple(model.inputs[0].shape[1:]), batch_size=batch_size,
                      name=model.inputs[0].name)
    clone = keras.models.clone_model(model, input_tensors=inp)
    clone.set_weights(model.get_weights())
    return clone


# ---------------------------------------------------------------- primitives
def conv_init(K, std: float = CONV_STD):
    """A fresh N(0, std^2) initializer (one instance per layer: unseeded
    initializer objects shared between layers would repeat their values)."""
    return K.initializers.RandomNormal(mean=0.0, stddev=std)


def leaky_relu(K, name: str):
    """LeakyReLU(0.01); the keyword differs between Keras 3 and tf_keras."""
    if is_keras3(K):
        return K.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name)
    return K.layers.LeakyReLU(alpha=LEAKY_SLOPE, name=name)


# ------------------------------------------------------------ BatchNorm
@keras.saving.register_keras_serializable(package="keras_pose")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` run by TensorFlow's fused kernel.

    Keras 3 normalises with a chain of element-wise ops (moments, then
    ``tf.nn.batch_normalization``) whose backward pass is another chain; the
    fused op does each direction in one kernel. Same variables, config and
    maths (biased batch variance for normalising and for the moving average,
    as Keras), so weights move freely between the two classes. Channels-last
    4-D inputs only; anything else (masks, ``synchronized=True``, renorm,
    other axes) takes Keras' own path. In inference the converter folds the
    op into the preceding convolution like the standard layer.
    """

    def _fusable(self, inputs, mask) -> bool:
        return (mask is None and len(inputs.shape) == 4 and self.axis in (3, -1)
                and not self.synchronized and not self.renorm and self.center and self.scale)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, "float32")   # statistics in float32, as Keras does
        gamma, beta = tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32")
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, is_training=True)
            # The op returns the unbiased (n / (n - 1)) batch variance; Keras
            # averages the biased one.
            n = tf.cast(tf.size(x) // tf.shape(x)[-1], "float32")
            variance = variance * ((n - 1.0) / tf.maximum(n, 1.0))
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon,
                is_training=False)
        return tf.cast(y, self.compute_dtype)


def batch_norm(K, name: str):
    """BatchNorm with the reference momentum/eps; fused in Keras 3 (see above)."""
    layer = FusedBatchNormalization if is_keras3(K) else K.layers.BatchNormalization
    return layer(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def conv(K, x, filters, kernel, name, strides=1, dilation=1, use_bias=False, dtype=None):
    """k x k conv with PyTorch-style symmetric padding (k-1)/2 * dilation.

    Stride-1 odd kernels: 'same' pads symmetrically, identical to PyTorch. Stride
    > 1: TF's 'same' pads less before than after (e.g. 2/3 for 7x7 stride 2),
    shifting features by a pixel (docs/method_bottom_up.md §3.2), so pad explicitly and use 'valid'.
    """
    padding = "same"
    if strides > 1 and kernel > 1:
        pad = (kernel - 1) // 2 * dilation
        x = K.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    extra = {} if dtype is None else {"dtype": dtype}
    return K.layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, dilation_rate=dilation,
        use_bias=use_bias, kernel_initializer=conv_init(K), bias_initializer="zeros",
        name=name, **extra)(x)


def conv_bn_act(K, x, filters, kernel, name, strides=1, dilation=1, act=True):
    """ConvBNAct (docs/method_bottom_up.md §3.1): conv (no bias) -> BN -> LeakyReLU(0.01)."""
    x = conv(K, x, filters, kernel, f"{name}_conv", strides=strides, dilation=dilation)
    x = batch_norm(K, f"{name}_bn")(x)
    return leaky_relu(K, f"{name}_act")(x) if act else x


def res_block(K, x, filters, name):
    """Post-activation bottleneck ResBlock (docs/method_bottom_up.md §3.1).

    (B, H, W, Cin) -> (B, H, W, filters): 1x1 (filters/2) -> 3x3 (filters/2) ->
    1x1 (filters), BN after each, LeakyReLU after the first two; skip is identity
    when Cin == filters, else 1x1 conv + BN; output LeakyReLU(main + skip).
    """
    cin = x.shape[-1]
    mid = filters // 2
    y = conv_bn_act(K, x, mid, 1, f"{name}_a")
    y = conv_bn_act(K, y, mid, 3, f"{name}_b")
    y = conv_bn_act(K, y, filters, 1, f"{name}_c", act=False)
    skip = x if cin == filters else conv_bn_act(K, x, filters, 1, f"{name}_skip", act=False)
    y = K.layers.Add(name=f"{name}_add")([y, skip])
    return leaky_relu(K, f"{name}_out")(y)


def squeeze_excite(K, x, reduction, name):
    """SE (§3.1): GAP -> Dense(C/r) -> LeakyReLU(0.01) -> Dense(C) -> sigmoid -> x * gate.

    (B, H, W, C) -> (B, H, W, C). GlobalAveragePooling2D(keepdims=True) keeps the
    gate 4-D, so Dense acts on the channel axis and Multiply broadcasts.
    """
    c = x.shape[-1]
    hidden = max(1, c // reduction)
    s = K.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = K.layers.Dense(hidden, kernel_initializer=conv_init(K, DENSE_STD),
                       bias_initializer="zeros", name=f"{name}_fc1")(s)
    s = leaky_relu(K, f"{name}_fc1_act")(s)
    s = K.layers.Dense(c, activation="sigmoid", kernel_initializer=conv_init(K, DENSE_STD),
                       bias_initializer="zeros", name=f"{name}_fc2")(s)
    return K.layers.Multiply(name=f"{name}_scale")([x, s])
