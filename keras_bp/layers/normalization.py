"""The normalization layers: y = gamma (x - mean) / sqrt(var + eps) + beta, with its backward.

Both normalize x over some axes S (|S| = N elements per statistic) and then
scale and shift:

    mu   = mean over S of x                      (statistic's shape, S kept as 1)
    var  = mean over S of (x - mu)^2             (biased, as tf.nn.moments)
    s    = 1 / sqrt(var + epsilon)
    xhat = (x - mu) s
    y    = gamma xhat + beta

BatchNormalization takes S = every axis but the channel axis (gamma and beta
are per channel); LayerNormalization takes S = its `axis` (gamma and beta are
per normalized element). One backward (`normalize_backward`) serves both.

Two of Keras's options change the forward: BatchNormalization's `renorm`
(batch renormalization, Ioffe 2017) multiplies xhat by a per-channel r and
adds a d, both constants of the backward (`batch_renorm_train_op`);
LayerNormalization's deprecated `rms_scaling` drops the centering of the
numerator and beta, y = gamma x s (`layer_norm_rms_scaling_op`).
"""

import numbers
import warnings
from typing import NamedTuple

import keras
import tensorflow as tf

from keras_bp._validation import ArgumentTypeError, check_int
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


def normalize_backward(dy, x, mean, s, gamma, axes, d_mean=None, d_variance=None, weights=None):
    """dL/dx through the normalization, the batch statistics included.

    With g = dy gamma = dL/dxhat, sums over S (axes), N = |S|:

        dL/dvar = -1/2 s^3 sum(g (x - mu))                       (+ upstream d_variance)
        dL/dmu  = -s sum(g)                                      (+ upstream d_mean)
        dx      = g s + dL/dvar 2 (x - mu) / N + dL/dmu / N

    since dvar/dx = 2 (x - mu) / N and dmu/dx = 1 / N (var's own dependence
    on mu vanishes: sum(x - mu) = 0). Without upstream statistics this is the
    familiar
        dx = (s / N) (N g - sum(g) - xhat sum(g xhat)).

    With `weights` m (Keras's masked BatchNormalization), mu and var are
    m-weighted means with denominator W = sum(m) + 1e-7; every 1/N above
    becomes m / W and dL/dmu gains dL/dvar dvar/dmu = dL/dvar (-2 sum(m (x - mu)) / W),
    which no longer vanishes exactly.

    Shapes: x, dy (input's); mean, s (input's rank, S axes of length 1);
    gamma (whatever multiplies xhat: gamma, or renorm's gamma r) broadcastable
    to x or None.
    """
    g = dy if gamma is None else dy * gamma
    centered = x - mean
    sum_g = tf.reduce_sum(g, axis=axes, keepdims=True)
    sum_g_centered = tf.reduce_sum(g * centered, axis=axes, keepdims=True)
    return dx_from_sums(g * s, centered, s, sum_g, sum_g_centered, axes, d_mean, d_variance, weights)


def dx_from_sums(g_s, centered, s, sum_g, sum_g_centered, axes, d_mean=None, d_variance=None, weights=None):
    """`normalize_backward`'s dx from its two sums over S, sum(g) and sum(g (x - mu)).

    g_s = g s is the input's shape; the sums, s and the upstream statistics
    have S axes of length 1, so every coefficient below is computed on those
    small tensors and the input-sized work is three multiply-adds:

        dx = g s + (x - mu) (2 dL/dvar / N) + dL/dmu / N
    """
    d_var = -0.5 * s * s * s * sum_g_centered
    d_mu = -s * sum_g
    if d_variance is not None:
        d_var += d_variance
    if d_mean is not None:
        d_mu += d_mean
    if weights is None:
        n = _count(centered, axes)
        return g_s + centered * (2 * d_var / n) + d_mu / n
    m, total = weights
    d_mu += d_var * -2 * tf.reduce_sum(m * centered, axis=axes, keepdims=True) / total
    return g_s + (2 * d_var * centered + d_mu) * (m / total)


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


def _count(x, axes):
    """N = the number of elements per statistic over `axes`, in x's dtype."""
    return tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)


# --- what both layers do with gamma and beta -------------------------------------


def _add_gamma_and_beta(layer, shape, scale, center):
    """Adds `gamma` (when `scale`), then `beta` (when `center`), as Keras does; None where absent.

    Neither is autocast: the math runs in at least float32 (see the layers' `call`).
    """
    layer.gamma = add_weight_with_options(layer, "gamma", shape, autocast=False) if scale else None
    layer.beta = add_weight_with_options(layer, "beta", shape, autocast=False) if center else None


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
    """What training-mode batch normalization (and renormalization) saves for its backward."""

    x: tf.Tensor  # the input
    mean: tf.Tensor  # mu, the input's rank with S axes of length 1
    s: tf.Tensor  # 1 / sqrt(var + eps), mu's shape
    scale: object  # what multiplies xhat, broadcastable to x: gamma, gamma r, r (renorm, no gamma), or None
    has_gamma: bool  # whether gamma was given (else dgamma is None)
    has_beta: bool  # whether beta was given (else dbeta is None)
    weights: object  # (mask, sum(mask) + eps) for masked statistics, or None
    correction: object  # renorm's (r, d), each broadcastable to x, or None


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
    The mask gets no gradient. Saves x, mu, s (and the mask's weights).
    """

    def forward(x, gamma, beta, mask):
        return _train_forward(x, gamma, beta, mask, axes, epsilon, None)

    def backward(saved, dy, d_mean, d_variance):
        return _train_backward(saved, dy, d_mean, d_variance, axes)

    return manual_gradient(forward, backward, name="batch_normalization")


def batch_renorm_train_op(axes, epsilon, clipping):
    """Training-mode batch renormalization (Ioffe 2017), as Keras's `renorm=True`:
    (x, gamma, beta, mask, renorm_mean, renorm_stddev) -> (y, mean, variance).

    Forward, per channel (C,), with the batch's mu, var and s as in
    `batch_norm_train_op` and (r, d) from `renorm_correction`:

        y = gamma (xhat r + d) + beta
          = xhat (gamma r) + (gamma d + beta)      (Keras's composed scale and offset)

    r and d are treated as constants in the backward (stop_gradient), as the
    paper and Keras do: they carry the moving statistics into the training
    forward, and their own dependence on the batch is not differentiated.
    Without gamma, y = xhat r + d + beta.

    Backward (sums over S):
        dx     = normalize_backward(...) with gamma r in gamma's place   (input's shape)
        dgamma = sum over S of dy (xhat r + d)                           (C,)
        dbeta  = sum over S of dy                                        (C,)
    The mask, renorm_mean and renorm_stddev get no gradient. Saves what
    `batch_norm_train_op` saves, and r and d.
    """

    def forward(x, gamma, beta, mask, renorm_mean, renorm_stddev):
        def correction(mean, variance):
            return renorm_correction(mean, variance, renorm_mean, renorm_stddev, epsilon, clipping)

        return _train_forward(x, gamma, beta, mask, axes, epsilon, correction)

    def backward(saved, dy, d_mean, d_variance):
        return _train_backward(saved, dy, d_mean, d_variance, axes) + (None, None)

    return manual_gradient(forward, backward, name="batch_renormalization")


def renorm_correction(mean, variance, renorm_mean, renorm_stddev, epsilon, clipping):
    """Batch renormalization's correction (r, d), per channel (C,), as Keras computes it.

        sigma   = sqrt(var + eps)                              the batch's stddev
        sigma_R = max(renorm_stddev, sqrt(eps))                 NOTE: Keras's guard against a zero stddev
        r       = clip(sigma / sigma_R, rmin, rmax)
        d       = clip((mu - renorm_mean) / sigma_R, -dmax, dmax)

    `clipping` holds "rmin", "rmax", "dmax" (each optional: no bound where
    missing or None). Both are returned under stop_gradient: constants of the
    backward, as in the paper and in Keras.
    """
    stddev = tf.sqrt(variance + epsilon)
    renorm_stddev = tf.maximum(renorm_stddev, tf.sqrt(tf.constant(epsilon, stddev.dtype)))
    r = stddev / renorm_stddev
    d = (mean - renorm_mean) / renorm_stddev
    rmin, rmax, dmax = (clipping.get(key) for key in ("rmin", "rmax", "dmax"))
    if rmin is not None:
        r = tf.maximum(r, rmin)
    if rmax is not None:
        r = tf.minimum(r, rmax)
    if dmax is not None:
        d = tf.clip_by_value(d, -dmax, dmax)
    return tf.stop_gradient(r), tf.stop_gradient(d)


def _train_forward(x, gamma, beta, mask, axes, epsilon, correction):
    """y, mean, variance of training-mode batch normalization, and what the backward needs.

    `correction` is None, or renorm's `(mean, variance) -> (r, d)` on (C,) vectors.
    """
    has_gamma, has_beta = gamma is not None, beta is not None
    gamma, beta = _per_channel(gamma, x, axes), _per_channel(beta, x, axes)
    if mask is None:
        mean, variance = moments(x, axes)
        weights = None
    else:
        mean, variance, total = masked_moments(x, mask, axes)
        weights = (mask, total)
    batch_mean, batch_variance = tf.squeeze(mean, axes), tf.squeeze(variance, axes)
    scale, offset, r_and_d = gamma, beta, None
    if correction is not None:
        r, d = (_per_channel(c, x, axes) for c in correction(batch_mean, batch_variance))
        # NOTE: Keras's order: scale = r gamma, offset = d gamma + beta.
        scale, offset = (r, d) if gamma is None else (r * gamma, d * gamma)
        if beta is not None:
            offset = offset + beta
        r_and_d = (r, d)
    y = normalize_forward(x, mean, variance, scale, offset, epsilon)
    s = tf.math.rsqrt(variance + epsilon)
    saved = BatchNormSaved(x, mean, s, scale, has_gamma, has_beta, weights, r_and_d)
    return (y, batch_mean, batch_variance), saved


def _train_backward(saved, dy, d_mean, d_variance, axes):
    """(dx, dgamma, dbeta, dmask = None) of `_train_forward` (see the two ops' docstrings).

    What multiplies xhat (gamma, or renorm's gamma r) is constant over S, so
    `normalize_backward`'s sums come out of two sums of dy, which dgamma and
    dbeta reuse:

        sum(g) = gamma sum(dy),   sum(g (x - mu)) = gamma sum(dy (x - mu))
        dgamma = sum(dy xhat) = s sum(dy (x - mu))       (renorm: r s sum(dy (x - mu)) + d sum(dy))
        dbeta  = sum(dy)
    """
    x, mean, s = saved.x, saved.mean, saved.s
    stat_shape = tf.shape(mean)
    centered = x - mean
    sum_dy = tf.reduce_sum(dy, axes, keepdims=True)
    sum_dy_centered = tf.reduce_sum(dy * centered, axes, keepdims=True)
    scale = 1.0 if saved.scale is None else saved.scale
    dx = dx_from_sums(
        dy * (scale * s), centered, s, scale * sum_dy, scale * sum_dy_centered, axes,
        d_mean=tf.reshape(d_mean, stat_shape), d_variance=tf.reshape(d_variance, stat_shape),
        weights=saved.weights,
    )
    # What gamma multiplies: xhat, or renorm's xhat r + d.
    dgamma_keepdims = s * sum_dy_centered
    if saved.correction is not None:
        r, d = saved.correction
        dgamma_keepdims = r * dgamma_keepdims + d * sum_dy
    dgamma = tf.reshape(dgamma_keepdims, [-1]) if saved.has_gamma else None
    dbeta = tf.reshape(sum_dy, [-1]) if saved.has_beta else None
    return dx, dgamma, dbeta, None


def batch_norm_inference_op(axis, epsilon):
    """Inference-mode batch normalization with the moving statistics:
    (x, moving_mean, moving_variance, gamma, beta) -> y, gamma and beta possibly None.

    Forward: y = gamma (x - mm) / sqrt(mv + eps) + beta, mm and mv constants of the batch.
    (Batch renormalization's inference is this same forward.)

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


_RENORM_CLIPPING_KEYS = ("rmax", "rmin", "dmax")


def _checked_renorm_clipping(renorm_clipping):
    """`renorm_clipping` as Keras keeps it with renorm=True ({} for None); raises on what Keras rejects.

    Keras's errors, with its words ("Received invalid keys", "rmax should be",
    "dmax should be non-negative") and the value received.
    """
    clipping = renorm_clipping or {}
    received = f"received: renorm_clipping={renorm_clipping!r}"
    if not isinstance(clipping, dict):
        raise ValueError(f"renorm_clipping must be None or a dict with keys {_RENORM_CLIPPING_KEYS}, {received}")
    invalid = sorted(set(clipping) - set(_RENORM_CLIPPING_KEYS))
    if invalid:
        raise ValueError(
            f"Received invalid keys for `renorm_clipping` argument: {invalid}; "
            f"supported keys are {list(_RENORM_CLIPPING_KEYS)}, {received}"
        )
    for key, value in clipping.items():
        if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool)):
            raise ValueError(f"renorm_clipping[{key!r}] must be a number or None, {received}")
    rmax, rmin, dmax = (clipping.get(key) for key in _RENORM_CLIPPING_KEYS)
    if rmax is not None and rmin is not None and rmax < rmin:
        raise ValueError(f"rmax should be greater than or equal to rmin in `renorm_clipping`, {received}")
    if dmax is not None and dmax < 0:
        raise ValueError(f"dmax should be non-negative in `renorm_clipping`, {received}")
    return clipping


def _sqrt_of(initializer):
    """Keras's renorm stddev initializer: sqrt of a fresh clone of `initializer` at each call."""

    def stddev_initializer(shape, dtype=None):
        return tf.sqrt(_clone(initializer)(shape, dtype=dtype))

    return stddev_initializer


def _clone(initializer):
    """A fresh copy of an initializer (a new draw for random ones), as Keras's `_clone_initializer`."""
    if isinstance(initializer, keras.initializers.Initializer):
        return initializer.__class__.from_config(initializer.get_config())
    return initializer


def _update_moving_statistics(layer, mean, variance):
    """Keras's update of the moving statistics after a training batch, term for term:

        moving_mean     = moving_mean * momentum + mean * (1 - momentum)
        moving_variance = moving_variance * momentum + variance * (1 - momentum)
    (The update is no part of the gradient.)
    """
    moving_mean, moving_variance = (tf.cast(v, mean.dtype) for v in (layer.moving_mean, layer.moving_variance))
    layer.moving_mean.assign(moving_mean * layer.momentum + mean * (1.0 - layer.momentum))
    layer.moving_variance.assign(moving_variance * layer.momentum + variance * (1.0 - layer.momentum))


def _update_renorm_statistics(layer, mean, variance):
    """Keras's updates with renorm, term for term (sigma = sqrt(var + eps) of the batch):

        renorm_mean     = renorm_mean * renorm_momentum + mean * (1 - renorm_momentum)
        renorm_stddev   = renorm_stddev * renorm_momentum + sigma * (1 - renorm_momentum)
        moving_mean     = moving_mean * momentum + mean * (1 - momentum)
        moving_stddev   = moving_stddev * momentum + sigma * (1 - momentum)
        moving_variance = max(moving_stddev^2 - eps, 0)   (NOTE: Keras's relu against rounding below 0)
    """
    stddev = tf.sqrt(variance + layer.epsilon)
    m, rm = layer.momentum, layer.renorm_momentum
    renorm_mean, renorm_stddev, moving_mean, moving_stddev = (
        tf.cast(v, mean.dtype) for v in (layer.renorm_mean, layer.renorm_stddev, layer.moving_mean, layer.moving_stddev)
    )
    layer.renorm_mean.assign(renorm_mean * rm + mean * (1.0 - rm))
    layer.renorm_stddev.assign(renorm_stddev * rm + stddev * (1.0 - rm))
    layer.moving_mean.assign(moving_mean * m + mean * (1.0 - m))
    moving_stddev = moving_stddev * m + stddev * (1.0 - m)
    layer.moving_stddev.assign(moving_stddev)
    layer.moving_variance.assign(tf.nn.relu(moving_stddev * moving_stddev - layer.epsilon))


@keras.saving.register_keras_serializable(package="keras_bp")
class BatchNormalization(keras.layers.Layer):
    """Batch normalization with a hand-derived backward pass.

    Drop-in for `keras.layers.BatchNormalization` (Keras 3): same arguments,
    defaults and weights, in Keras's order: `gamma`, `beta` (trainable),
    `moving_mean`, `moving_variance` (not trainable), each of shape
    `(channels,)`; with `renorm=True` also `moving_stddev`, `renorm_mean`,
    `renorm_stddev` (not trainable), after them. `synchronized=True` is not
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

    With `renorm=True` (batch renormalization, Ioffe 2017), training
    computes y = gamma (xhat r + d) + beta with r = sigma / sigma_R and
    d = (mu - renorm_mean) / sigma_R, clipped by `renorm_clipping`, where
    sigma = sqrt(var + eps) and sigma_R = max(renorm_stddev, sqrt(eps)); r and
    d are constants of the backward (stop_gradient), as in the paper and
    Keras (`batch_renorm_train_op`). The updates (see `_update_renorm_statistics`):
    renorm_mean and renorm_stddev move with `renorm_momentum`, moving_mean
    and moving_stddev with `momentum`, and moving_variance becomes
    max(moving_stddev^2 - eps, 0). Inference is as without renorm.

    Args:
        axis: The channel axis (int), e.g. -1 for channels_last, 1 for
            channels_first.
        momentum: Momentum of the moving statistics.
        epsilon: Small float added to the variance.
        center: Whether to add `beta`.
        scale: Whether to multiply by `gamma`.
        beta_initializer, gamma_initializer, moving_mean_initializer,
            moving_variance_initializer: Initializers (with renorm,
            `renorm_mean` starts from `moving_mean_initializer` and both
            stddevs from the square root of `moving_variance_initializer`).
        beta_regularizer, gamma_regularizer: Regularizers.
        beta_constraint, gamma_constraint: Constraints.
        renorm: Whether to use batch renormalization.
        renorm_clipping: With renorm, None or a dict with optional keys
            "rmax", "rmin", "dmax": r is clipped to [rmin, rmax], d to
            [-dmax, dmax] (no bound for a missing key).
        renorm_momentum: With renorm, momentum of `renorm_mean` and
            `renorm_stddev`.
        synchronized: Must be False (cross-replica statistics are not supported).

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
        if synchronized:
            raise ValueError(
                "keras_bp.layers.BatchNormalization does not support synchronized=True, "
                f"received: synchronized={synchronized!r}; use keras.layers.BatchNormalization for it."
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
        # As Keras: the clipping is checked (and None becomes {}) only with renorm.
        self.renorm = renorm
        self.renorm_clipping = _checked_renorm_clipping(renorm_clipping) if renorm else renorm_clipping
        self.renorm_momentum = renorm_momentum
        self.supports_masking = True
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None
        self.moving_stddev = self.renorm_mean = self.renorm_stddev = None
        self._train_op = self._inference_op = None

    def build(self, input_shape):
        rank = len(input_shape)
        _check_axes_in_bounds(self.axis, [self.axis], input_shape)
        channels = input_shape[self.axis]
        shape = (channels,)
        _add_gamma_and_beta(self, shape, self.scale, self.center)
        self.moving_mean = add_weight_with_options(self, "moving_mean", shape, trainable=False, autocast=False)
        self.moving_variance = add_weight_with_options(self, "moving_variance", shape, trainable=False, autocast=False)
        axis = self.axis % rank
        reduction_axes = [a for a in range(rank) if a != axis]
        if self.renorm:
            stddev_initializer = _sqrt_of(self.moving_variance_initializer)
            statistic = dict(shape=shape, trainable=False, autocast=False)
            self.moving_stddev = self.add_weight(name="moving_stddev", initializer=stddev_initializer, **statistic)
            self.renorm_mean = self.add_weight(
                name="renorm_mean", initializer=_clone(self.moving_mean_initializer), **statistic
            )
            self.renorm_stddev = self.add_weight(name="renorm_stddev", initializer=stddev_initializer, **statistic)
            self._train_op = batch_renorm_train_op(reduction_axes, self.epsilon, self.renorm_clipping)
        else:
            self._train_op = batch_norm_train_op(reduction_axes, self.epsilon)
        self.input_spec = keras.layers.InputSpec(ndim=rank, axes={self.axis: channels})
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

        if training and self.trainable:
            if mask is not None:
                mask = tf.broadcast_to(tf.cast(mask[..., tf.newaxis], compute_dtype), tf.shape(x))
            if self.renorm:
                renorm_mean, renorm_stddev = (tf.cast(v, compute_dtype) for v in (self.renorm_mean, self.renorm_stddev))
                y, mean, variance = self._train_op(x, gamma, beta, mask, renorm_mean, renorm_stddev)
                _update_renorm_statistics(self, mean, variance)
            else:
                y, mean, variance = self._train_op(x, gamma, beta, mask)
                _update_moving_statistics(self, mean, variance)
        else:
            moving_mean = tf.cast(self.moving_mean, compute_dtype)
            moving_variance = tf.cast(self.moving_variance, compute_dtype)
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
            "renorm": self.renorm,
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
    Saves x, mu, s.
    """

    def forward(x, gamma, beta):
        has_beta = beta is not None
        gamma = None if gamma is None else _broadcastable(gamma, x, axes)
        beta = None if beta is None else _broadcastable(beta, x, axes)
        mean, variance = moments(x, axes)
        s = tf.math.rsqrt(variance + epsilon)
        y = normalize_forward(x, mean, variance, gamma, beta, epsilon)
        return y, (x, mean, s, gamma, has_beta)

    def backward(saved, dy):
        x, mean, s, gamma, has_beta = saved
        dx = normalize_backward(dy, x, mean, s, gamma, axes)
        param_grads = _param_grads(dy, (x - mean) * s, _axes_but(x, axes), gamma is not None, has_beta)
        return (dx,) + tuple(_to_param_shape(g, x, axes) for g in param_grads)

    return manual_gradient(forward, backward, name="layer_normalization")


def layer_norm_rms_scaling_op(axes, epsilon):
    """Keras's deprecated `rms_scaling=True`: (x, gamma) -> y, statistics over `axes` per example.

    Forward (S = axes, N = |S|; despite the name, Keras divides by the
    standard deviation, not the root mean square, and uses no beta):

        mu  = mean over S of x                     (statistic's shape)
        var = mean over S of (x - mu)^2            (biased, as tf.math.reduce_variance)
        s   = 1 / sqrt(var + epsilon)              (statistic's shape)
        y   = (x s) gamma                          (input's shape; x itself, not x - mu)

    Backward, with g = dy gamma (input's shape) and sums over S:

        dL/dvar = -1/2 s^3 sum(g x)                (statistic's shape)
        dx      = g s + dL/dvar 2 (x - mu) / N     (input's shape)
        dgamma  = sum over the other axes of dy x s   (gamma's shape)

    since dvar/dx = 2 (x - mu) / N (var's dependence on mu vanishes:
    sum(x - mu) = 0). gamma may be None. Saves x, mu, s.
    """

    def forward(x, gamma):
        mean, variance = moments(x, axes)
        s = tf.math.rsqrt(variance + epsilon)
        y = x * s  # NOTE: then times gamma, Keras's order, so outputs match bit for bit.
        if gamma is not None:
            gamma = _broadcastable(gamma, x, axes)
            y = y * gamma
        return y, (x, mean, s, gamma)

    def backward(saved, dy):
        x, mean, s, gamma = saved
        g = dy if gamma is None else dy * gamma
        d_var = -0.5 * s * s * s * tf.reduce_sum(g * x, axis=axes, keepdims=True)
        dx = g * s + d_var * 2 * (x - mean) / _count(x, axes)
        dgamma = None if gamma is None else tf.reduce_sum(dy * x * s, _axes_but(x, axes))
        return dx, _to_param_shape(dgamma, x, axes)

    return manual_gradient(forward, backward, name="layer_normalization_rms_scaling")


def _broadcastable(param, x, axes):
    """A parameter of the normalized axes' shape, reshaped to broadcast against x."""
    shape = [1] * x.shape.rank
    for a, size in zip(axes, param.shape):
        shape[a] = size
    return tf.reshape(param, shape)


def _axes_but(x, axes):
    """x's axes that are not in `axes`."""
    return [a for a in range(x.shape.rank) if a not in axes]


def _to_param_shape(g, x, axes):
    """A gradient summed over the other axes, in the normalized axes' shape (None stays None)."""
    return None if g is None else tf.reshape(g, [tf.shape(x)[a] for a in axes])


def _checked_axis(axis):
    """LayerNormalization's `axis`: an int, or a list/tuple of ints (a list kept), else Keras's TypeError."""
    if isinstance(axis, int) and not isinstance(axis, bool):
        return axis
    if isinstance(axis, (list, tuple)) and all(isinstance(a, int) and not isinstance(a, bool) for a in axis):
        return list(axis)
    # Keras raises TypeError with these words; ArgumentTypeError is a ValueError too.
    raise ArgumentTypeError(
        f"Expected an int or a list/tuple of ints for the argument 'axis', received: axis={axis!r}"
    )


@keras.saving.register_keras_serializable(package="keras_bp")
class LayerNormalization(keras.layers.Layer):
    """Layer normalization with a hand-derived backward pass (`layer_norm_op`).

    Drop-in for `keras.layers.LayerNormalization` (Keras 3): same arguments,
    defaults and weights (`gamma`, then `beta`, of the normalized axes'
    shape). As in Keras, the statistics are computed in at least float32
    and the weights are not autocast.

    The deprecated `rms_scaling=True` works as in Keras, warning as Keras
    does (`layer_norm_rms_scaling_op`): y = gamma x / sqrt(var + eps), the
    numerator not centered (the variance is, so it is not the RMS that
    `keras.layers.RMSNormalization` divides by); `gamma` is created even
    with `scale=False` and `beta` never.

    Args:
        axis: int or list/tuple of ints, the axes to normalize over (per example).
        epsilon: Small float added to the variance.
        center: Whether to add `beta` (ignored with rms_scaling).
        scale: Whether to multiply by `gamma` (always, with rms_scaling).
        beta_initializer, gamma_initializer: Initializers.
        beta_regularizer, gamma_regularizer: Regularizers.
        beta_constraint, gamma_constraint: Constraints.
        rms_scaling: (keyword, deprecated) see above.

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
            warnings.warn(
                "You passed `rms_scaling=True`, which is deprecated. This argument "
                "incorrectly scales the input by the variance, not the root mean square. "
                "To correctly use RMS Normalization, please use "
                "`keras.layers.RMSNormalization` instead."
            )
        super().__init__(**kwargs)
        self.axis = _checked_axis(axis)
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.rms_scaling = rms_scaling
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
        # As Keras: rms_scaling always has gamma, never beta.
        _add_gamma_and_beta(self, shape, self.scale or self.rms_scaling, self.center and not self.rms_scaling)
        positive_axes = sorted(a % rank for a in self.axis)
        if self.rms_scaling:
            self._op = layer_norm_rms_scaling_op(positive_axes, self.epsilon)
        else:
            self._op = layer_norm_op(positive_axes, self.epsilon)

    def call(self, inputs):
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = tf.cast(inputs, compute_dtype)
        gamma, beta = _gamma_and_beta(self, compute_dtype)
        y = self._op(x, gamma) if self.rms_scaling else self._op(x, gamma, beta)
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        base_config = super().get_config()
        config = {**_shared_config(self), "rms_scaling": self.rms_scaling}
        return {**base_config, **config}
