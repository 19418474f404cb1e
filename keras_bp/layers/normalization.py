"""The normalization layers: y = gamma (x - mean) / sqrt(var + eps) + beta, with its backward.

Both normalize x over some axes S (|S| = N elements per statistic) and then
scale and shift:

    mu   = mean over S of x                      (statistic's shape, S kept as 1)
    var  = mean over S of (x - mu)^2             (biased, as tf.nn.moments)
    r    = 1 / sqrt(var + epsilon)
    xhat = (x - mu) r
    y    = gamma xhat + beta

BatchNormalization takes S = every axis but the channel axis (gamma and beta
are per channel); LayerNormalization takes S = its `axis` (gamma and beta are
per normalized element). One backward (`normalize_backward`) serves both.
"""

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_bp._validation import check_int
from keras_bp.core import manual_gradient
from keras_bp.layers._weight_options import add_weight_with_options, set_weight_options, weight_options_config

# --- the shared math -------------------------------------------------------


def normalize_forward(x, mean, variance, gamma, beta, epsilon):
    """y = gamma (x - mu) / sqrt(var + eps) + beta, computed as Keras does.

    NOTE: written as x * inv + (beta - mu * inv), inv = gamma / sqrt(var + eps),
    the order of tf.nn.batch_normalization and Keras's layer_normalization,
    so outputs match Keras's bit for bit.
    """
    inv = tf.math.rsqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * gamma
    shift = -mean * inv
    if beta is not None:
        shift = beta + shift
    return x * inv + shift


def normalize_backward(dy, x, mean, r, gamma, axes, d_mean=None, d_variance=None, weights=None):
    """dL/dx through the normalization, the batch statistics included.

    With g = dy gamma = dL/dxhat, sums over S (axes), N = |S|:

        dL/dvar = -1/2 r^3 sum(g (x - mu))                       (+ upstream d_variance)
        dL/dmu  = -r sum(g)                                      (+ upstream d_mean)
        dx      = g r + dL/dvar 2 (x - mu) / N + dL/dmu / N

    since dvar/dx = 2 (x - mu) / N and dmu/dx = 1 / N (var's own dependence
    on mu vanishes: sum(x - mu) = 0). Without upstream statistics this is the
    familiar
        dx = (r / N) (N g - sum(g) - xhat sum(g xhat)).

    With `weights` m (Keras's masked BatchNormalization), mu and var are
    m-weighted means with denominator W = sum(m) + 1e-7; every 1/N above
    becomes m / W and dL/dmu gains dL/dvar dvar/dmu = dL/dvar (-2 sum(m (x - mu)) / W),
    which no longer vanishes exactly.

    Shapes: x, dy (input's); mean, r (input's rank, S axes of length 1);
    gamma broadcastable to x or None.
    """
    g = dy if gamma is None else dy * gamma
    centered = x - mean
    d_var = -0.5 * r * r * r * tf.reduce_sum(g * centered, axis=axes, keepdims=True)
    d_mu = -r * tf.reduce_sum(g, axis=axes, keepdims=True)
    if d_variance is not None:
        d_var += d_variance
    if d_mean is not None:
        d_mu += d_mean
    if weights is None:
        per_element = 1 / tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
    else:
        m, total = weights
        d_mu += d_var * -2 * tf.reduce_sum(m * centered, axis=axes, keepdims=True) / total
        per_element = m / total
    return g * r + (2 * d_var * centered + d_mu) * per_element


def moments(x, axes):
    """mean, variance over axes, keepdims, exactly as tf.nn.moments computes them."""
    mean = tf.reduce_mean(x, axes, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axes, keepdims=True)
    return mean, variance


def masked_moments(x, m, axes):
    """Keras's masked moments: m-weighted, denominator sum(m) + backend epsilon."""
    total = tf.reduce_sum(m, axes, keepdims=True) + keras.backend.epsilon()
    mean = tf.reduce_sum(tf.where(m > 0, x, tf.zeros_like(x)), axes, keepdims=True) / total
    variance = tf.reduce_sum(tf.where(m > 0, tf.square(x - mean), tf.zeros_like(x)), axes, keepdims=True) / total
    return mean, variance, total


# --- what both layers do with gamma and beta -------------------------------------


def _add_gamma_and_beta(layer, shape):
    """Adds `gamma` (when `layer.scale`), then `beta` (when `layer.center`), as Keras does.

    Neither is autocast: the math runs in at least float32 (see the layers' `call`).
    """
    if layer.scale:
        layer.gamma = add_weight_with_options(layer, "gamma", shape, autocast=False)
    if layer.center:
        layer.beta = add_weight_with_options(layer, "beta", shape, autocast=False)


def _shared_config(layer):
    """The options both layers take, for `get_config`: axis, epsilon, center, scale, gamma's and beta's."""
    return {
        "axis": layer.axis,
        "epsilon": layer.epsilon,
        "center": layer.center,
        "scale": layer.scale,
        **weight_options_config(layer, "beta", "gamma"),
    }


def _gamma_and_beta(layer, dtype):
    """The layer's gamma and beta as tensors of `dtype`, None where absent (read outside the ops)."""
    return tuple(None if w is None else tf.cast(w, dtype) for w in (layer.gamma, layer.beta))


def _check_axes_in_bounds(axis, axes, input_shape):
    """Raises unless every axis in `axes` indexes the input (`axis` is the argument as given)."""
    rank = len(input_shape)
    if not all(-rank <= a < rank for a in axes):
        raise ValueError(
            f"axis={axis} is out of bounds for an input of rank {rank}, "
            f"received: input_shape={tuple(input_shape)}"
        )


# --- BatchNormalization ------------------------------------------------------


class BatchNormSaved(NamedTuple):
    """What training-mode batch normalization saves for its backward."""

    x: tf.Tensor  # the input
    mean: tf.Tensor  # mu, the input's rank with S axes of length 1
    r: tf.Tensor  # 1 / sqrt(var + eps), mu's shape
    gamma: object  # gamma broadcastable to x, or None
    has_beta: bool  # whether beta was given (else dbeta is None)
    weights: object  # (mask, sum(mask) + eps) for masked statistics, or None


def batch_norm_train_op(axes, epsilon):
    """Training-mode batch normalization: (x, gamma, beta, mask) -> (y, mean, variance).

    Statistics over axes S = all but the channel axis; gamma, beta, mean,
    variance are per channel, shape (C,). gamma, beta and mask may each be
    None (absent). mean and variance are outputs too: the layer updates its
    moving statistics with them. With `mask` (the input's shape less the
    channel axis, broadcast to the input) the statistics are Keras's masked
    ones (see `normalize_backward`).

    Backward:
        dx     = normalize_backward(...)            (input's shape)
        dgamma = sum over S of dy xhat              (C,)
        dbeta  = sum over S of dy                   (C,)
    The mask gets no gradient. Saves x, mu, r (and the mask's weights).
    """

    def forward(x, gamma, beta, mask):
        has_beta = beta is not None
        gamma, beta = _per_channel(gamma, x, axes), _per_channel(beta, x, axes)
        if mask is None:
            mean, variance = moments(x, axes)
            weights = None
        else:
            mean, variance, total = masked_moments(x, mask, axes)
            weights = (mask, total)
        y = normalize_forward(x, mean, variance, gamma, beta, epsilon)
        r = tf.math.rsqrt(variance + epsilon)
        outputs = (y, tf.squeeze(mean, axes), tf.squeeze(variance, axes))
        return outputs, BatchNormSaved(x, mean, r, gamma, has_beta, weights)

    def backward(saved, dy, d_mean, d_variance):
        x, mean, r, gamma = saved.x, saved.mean, saved.r, saved.gamma
        stat_shape = tf.shape(mean)
        dx = normalize_backward(
            dy, x, mean, r, gamma, axes,
            d_mean=tf.reshape(d_mean, stat_shape), d_variance=tf.reshape(d_variance, stat_shape),
            weights=saved.weights,
        )
        dgamma, dbeta = _param_grads(dy, (x - mean) * r, axes, gamma is not None, saved.has_beta)
        return dx, dgamma, dbeta, None

    return manual_gradient(forward, backward, name="batch_normalization")


def batch_norm_inference_op(axis, epsilon):
    """Inference-mode batch normalization with the moving statistics:
    (x, moving_mean, moving_variance, gamma, beta) -> y, gamma and beta possibly None.

    Forward: y = gamma (x - mm) / sqrt(mv + eps) + beta, mm and mv constants of the batch.

    Backward (s = 1 / sqrt(mv + eps), sums over all axes but the channel axis):
        dx     = dy gamma s                                (input's shape)
        dmm    = -sum(dy) gamma s                          (C,)
        dmv    = -1/2 sum(dy (x - mm)) gamma s^3           (C,)
        dgamma = sum(dy (x - mm) s)                        (C,)
        dbeta  = sum(dy)                                   (C,)
    (The layer's moving statistics are not trainable; their gradients exist
    for completeness and are pruned in a traced training step.)
    Saves x and the statistics.
    """

    def forward(x, moving_mean, moving_variance, gamma, beta):
        axes = _other_axes(x, axis)
        mean, variance = _per_channel(moving_mean, x, axes), _per_channel(moving_variance, x, axes)
        has_beta = beta is not None
        gamma, beta = _per_channel(gamma, x, axes), _per_channel(beta, x, axes)
        y = normalize_forward(x, mean, variance, gamma, beta, epsilon)
        return y, (x, mean, variance, gamma, has_beta)

    def backward(saved, dy):
        x, mean, variance, gamma, has_beta = saved
        axes = _other_axes(x, axis)
        s = tf.math.rsqrt(variance + epsilon)
        scale = s if gamma is None else gamma * s
        sum_dy = tf.reduce_sum(dy, axes)
        sum_dy_centered = tf.reduce_sum(dy * (x - mean), axes, keepdims=True)
        d_mean = -sum_dy * tf.reshape(scale, [-1])
        d_variance = tf.reshape(-0.5 * sum_dy_centered * scale * s * s, [-1])
        dgamma = None if gamma is None else tf.reshape(sum_dy_centered * s, [-1])
        dbeta = sum_dy if has_beta else None
        return dy * scale, d_mean, d_variance, dgamma, dbeta

    return manual_gradient(forward, backward, name="batch_normalization_inference")


def _param_grads(dy, xhat, sum_axes, has_gamma, has_beta):
    """(dgamma, dbeta) = (sum dy xhat, sum dy) over sum_axes, None for an absent parameter."""
    dgamma = tf.reduce_sum(dy * xhat, sum_axes) if has_gamma else None
    dbeta = tf.reduce_sum(dy, sum_axes) if has_beta else None
    return dgamma, dbeta


def _per_channel(v, x, reduction_axes):
    """A (C,) vector reshaped to broadcast against x along its channel axis (None stays None)."""
    if v is None:
        return None
    return tf.reshape(v, [1 if a in reduction_axes else -1 for a in range(x.shape.rank)])


def _other_axes(x, axis):
    axis = axis % x.shape.rank
    return [a for a in range(x.shape.rank) if a != axis]


@keras.saving.register_keras_serializable(package="keras_bp")
class BatchNormalization(keras.layers.Layer):
    """Batch normalization with a hand-derived backward pass.

    Drop-in for `keras.layers.BatchNormalization` (Keras 3): same arguments,
    defaults and weights, in Keras's order: `gamma`, `beta` (trainable),
    `moving_mean`, `moving_variance` (not trainable), each of shape
    `(channels,)`. Batch renormalization and `synchronized=True` are not
    supported.

    With `training=True` (and a trainable layer) it normalizes with the
    batch's mean and biased variance, backpropagates through them
    (`batch_norm_train_op`), and updates the moving statistics as Keras does,
    in `call`:
        moving_mean     = moving_mean * momentum + mean * (1 - momentum)
        moving_variance = moving_variance * momentum + variance * (1 - momentum)
    Otherwise it normalizes with the moving statistics (`batch_norm_inference_op`).
    As in Keras, float16 and bfloat16 inputs are normalized in float32 and
    the output cast back to the layer's compute dtype; the weights stay float32.

    Args:
        axis: The channel axis (int), e.g. -1 for channels_last, 1 for
            channels_first.
        momentum: Momentum of the moving statistics.
        epsilon: Small float added to the variance.
        center: Whether to add `beta`.
        scale: Whether to multiply by `gamma`.
        beta_initializer, gamma_initializer, moving_mean_initializer,
            moving_variance_initializer: Initializers.
        beta_regularizer, gamma_regularizer: Regularizers.
        beta_constraint, gamma_constraint: Constraints.

    Call arguments:
        inputs: Tensor of any rank.
        training: Whether to use (and update) batch statistics.
        mask: Optional, the input's shape less the channel axis; masked
            elements are left out of the batch statistics.

    Input shape:
        Arbitrary. Output shape: the input's.
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        renorm=False,
        renorm_clipping=None,
        renorm_momentum=0.99,
        synchronized=False,
        **kwargs,
    ):
        if renorm or synchronized:
            name = "renorm" if renorm else "synchronized"
            raise ValueError(
                f"keras_bp.layers.BatchNormalization does not support {name}=True, "
                f"received: {name}={renorm if renorm else synchronized!r}; use "
                "keras.layers.BatchNormalization for it."
            )
        super().__init__(**kwargs)
        self.axis = check_int("axis", axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        set_weight_options(
            self,
            beta=(beta_initializer, beta_regularizer, beta_constraint),
            gamma=(gamma_initializer, gamma_regularizer, gamma_constraint),
            moving_mean=(moving_mean_initializer,),
            moving_variance=(moving_variance_initializer,),
        )
        self.renorm_clipping = renorm_clipping
        self.renorm_momentum = renorm_momentum
        self.supports_masking = True
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None
        self._train_op = self._inference_op = None

    def build(self, input_shape):
        rank = len(input_shape)
        _check_axes_in_bounds(self.axis, [self.axis], input_shape)
        channels = input_shape[self.axis]
        shape = (channels,)
        _add_gamma_and_beta(self, shape)
        self.moving_mean = add_weight_with_options(self, "moving_mean", shape, trainable=False, autocast=False)
        self.moving_variance = add_weight_with_options(self, "moving_variance", shape, trainable=False, autocast=False)
        self.input_spec = keras.layers.InputSpec(ndim=rank, axes={self.axis: channels})
        axis = self.axis % rank
        reduction_axes = [a for a in range(rank) if a != axis]
        self._train_op = batch_norm_train_op(reduction_axes, self.epsilon)
        self._inference_op = batch_norm_inference_op(axis, self.epsilon)

    def call(self, inputs, training=None, mask=None):
        if mask is not None and mask.shape.rank != inputs.shape.rank - 1:
            raise ValueError(
                "The mask must have one dimension less than the inputs, received: "
                f"mask.shape={mask.shape}, inputs.shape={inputs.shape}"
            )
        # NOTE: as Keras, normalize float16/bfloat16 in float32 (result_type with float32).
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = tf.cast(inputs, compute_dtype)
        gamma, beta = _gamma_and_beta(self, compute_dtype)
        moving_mean = tf.cast(self.moving_mean, compute_dtype)
        moving_variance = tf.cast(self.moving_variance, compute_dtype)

        if training and self.trainable:
            if mask is not None:
                mask = tf.broadcast_to(tf.cast(mask[..., tf.newaxis], compute_dtype), tf.shape(x))
            y, mean, variance = self._train_op(x, gamma, beta, mask)
            # Keras's update, term for term (the update is no part of the gradient).
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y = self._inference_op(x, moving_mean, moving_variance, gamma, beta)
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        base_config = super().get_config()
        config = {
            **_shared_config(self),
            "momentum": self.momentum,
            **weight_options_config(self, "moving_mean", "moving_variance"),
            "synchronized": False,
            "renorm": False,
            "renorm_clipping": self.renorm_clipping,
            "renorm_momentum": self.renorm_momentum,
        }
        return {**base_config, **config}


# --- LayerNormalization -------------------------------------------------------


def layer_norm_op(axes, epsilon):
    """Layer normalization: (x, gamma, beta) -> y, statistics over `axes` per example.

    gamma and beta have the normalized axes' shape, broadcast to x; either
    may be None (absent).

    Backward:
        dx     = normalize_backward(...)                          (input's shape)
        dgamma = sum over the other axes of dy xhat               (gamma's shape)
        dbeta  = sum over the other axes of dy                    (beta's shape)
    Saves x, mu, r.
    """

    def forward(x, gamma, beta):
        has_beta = beta is not None
        gamma = None if gamma is None else _broadcastable(gamma, x, axes)
        beta = None if beta is None else _broadcastable(beta, x, axes)
        mean, variance = moments(x, axes)
        r = tf.math.rsqrt(variance + epsilon)
        y = normalize_forward(x, mean, variance, gamma, beta, epsilon)
        return y, (x, mean, r, gamma, has_beta)

    def backward(saved, dy):
        x, mean, r, gamma, has_beta = saved
        dx = normalize_backward(dy, x, mean, r, gamma, axes)
        other_axes = [a for a in range(x.shape.rank) if a not in axes]
        param_shape = [tf.shape(x)[a] for a in axes]
        param_grads = _param_grads(dy, (x - mean) * r, other_axes, gamma is not None, has_beta)
        return (dx,) + tuple(None if g is None else tf.reshape(g, param_shape) for g in param_grads)

    return manual_gradient(forward, backward, name="layer_normalization")


def _broadcastable(param, x, axes):
    """A parameter of the normalized axes' shape, reshaped to broadcast against x."""
    shape = [1] * x.shape.rank
    for a, size in zip(axes, param.shape):
        shape[a] = size
    return tf.reshape(param, shape)


@keras.saving.register_keras_serializable(package="keras_bp")
class LayerNormalization(keras.layers.Layer):
    """Layer normalization with a hand-derived backward pass (`layer_norm_op`).

    Drop-in for `keras.layers.LayerNormalization` (Keras 3): same arguments,
    defaults and weights (`gamma`, then `beta`, of the normalized axes'
    shape). As in Keras, the statistics are computed in at least float32
    and the weights are not autocast. The deprecated `rms_scaling=True` is
    not supported (use `keras.layers.RMSNormalization`).

    Args:
        axis: int or list of ints, the axes to normalize over (per example).
        epsilon: Small float added to the variance.
        center: Whether to add `beta`.
        scale: Whether to multiply by `gamma`.
        beta_initializer, gamma_initializer: Initializers.
        beta_regularizer, gamma_regularizer: Regularizers.
        beta_constraint, gamma_constraint: Constraints.

    Input shape:
        Arbitrary. Output shape: the input's.
    """

    def __init__(
        self,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        rms_scaling = kwargs.pop("rms_scaling", False)
        if rms_scaling:
            raise ValueError(
                "keras_bp.layers.LayerNormalization does not support the deprecated "
                f"rms_scaling, received: rms_scaling={rms_scaling!r}; use "
                "keras.layers.RMSNormalization."
            )
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)) and all(isinstance(a, int) and not isinstance(a, bool) for a in axis):
            self.axis = list(axis)
        elif isinstance(axis, int) and not isinstance(axis, bool):
            self.axis = axis
        else:
            raise ValueError(f"axis must be an int or a list of ints, received: axis={axis!r}")
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.rms_scaling = False
        set_weight_options(
            self,
            beta=(beta_initializer, beta_regularizer, beta_constraint),
            gamma=(gamma_initializer, gamma_regularizer, gamma_constraint),
        )
        self.supports_masking = True
        self.autocast = False
        self._op = None

    def build(self, input_shape):
        rank = len(input_shape)
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        _check_axes_in_bounds(self.axis, axes, input_shape)
        # As Keras: the axis attribute becomes a sorted list once built.
        self.axis = sorted(axes)
        shape = tuple(input_shape[a] for a in self.axis)
        self.gamma = self.beta = None
        _add_gamma_and_beta(self, shape)
        positive_axes = sorted(a % rank for a in self.axis)
        self._op = layer_norm_op(positive_axes, self.epsilon)

    def call(self, inputs):
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = tf.cast(inputs, compute_dtype)
        gamma, beta = _gamma_and_beta(self, compute_dtype)
        y = self._op(x, gamma, beta)
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        base_config = super().get_config()
        config = {**_shared_config(self), "rms_scaling": False}
        return {**base_config, **config}
