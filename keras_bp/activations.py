"""Activation functions as forward/backward pairs.

Each activation is a pair of plain functions on tensors:

    forward(z)            -> (y, saved)
    backward(saved, dy)   -> dz = dy * y'(z)

The forward uses the same TensorFlow ops as `keras.activations`, so outputs
match Keras's bit for bit; the backward is the derivative written out. Where
the derivative is a function of the output (sigmoid, tanh, softmax, exp, elu,
selu) the pair saves the output rather than recomputing it.

`get(identifier)` returns the `ActivationPair` for a name (or a
`keras.activations` function, or a pair), `configured(name, **options)` the
pair of an activation with options (relu's max_value, softmax's axis, ...),
as keras_bp's activation layers use it; the module-level functions
(`relu(x)`, `sigmoid(x)`, ...) apply an activation as a manual-gradient op,
like their `keras.activations` namesakes.

Derivatives (z: input, y: output, dy: upstream gradient, all the same shape):

    linear        y = z                               dz = dy
    relu          y = max(z, 0)                       dz = dy * [z > 0]
      (general: negative_slope a, max_value m, threshold t, as Keras)
                  y = z for t < z <= m, m above, a (z - t) below t
                                                      dz = dy * ([t < z <= m] + a [z < t])
    leaky_relu    y = z if z > 0 else a z             dz = dy * (1 if z > 0 else a)
    sigmoid       y = 1 / (1 + e^-z)                  dz = dy * y (1 - y)
    tanh          y = tanh z                          dz = dy * (1 - y^2)
    softmax       y_i = e^z_i / sum_k e^z_k           dz = y * (dy - sum_k dy_k y_k)
                  (the Jacobian dy_i/dz_j = y_i (delta_ij - y_j), applied
                   without building it)
    elu           y = z if z > 0 else alpha (e^z - 1) dz = dy * (1 if z > 0 else y + alpha)
    selu          y = scale * elu(z, alpha)           dz = dy * (scale if z >= 0 else y + scale alpha)
    softplus      y = log(1 + e^z)                    dz = dy * sigmoid(z)
    softsign      y = z / (1 + |z|)                   dz = dy / (1 + |z|)^2
    silu/swish    y = z s, s = sigmoid(z)             dz = dy * s (1 + z (1 - s))
    gelu (exact)  y = z Phi(z)                        dz = dy * (Phi(z) + z phi(z))
      Phi: standard normal CDF = (1 + erf(z / sqrt 2)) / 2, phi its density
    gelu (tanh)   y = z (1 + tanh u) / 2,  u = c (z + k z^3), c = sqrt(2/pi), k = 0.044715
                                                      dz = dy * ((1 + tanh u) / 2
                                                           + z (1 - tanh^2 u) c (1 + 3 k z^2) / 2)
    hard_sigmoid  y = relu6(z + 3) / 6                dz = dy * [-3 < z < 3] / 6
    exponential   y = e^z                             dz = dy * y
    hard_silu     y = z h, h = relu6(z + 3) / 6       dz = dy * (h + z [-3 < z < 3] / 6)
      (hard_swish: the same)
    mish          y = z t, t = tanh(softplus z)       dz = dy * (t + z (1 - t^2) sigmoid(z))
    celu          y = max(z, 0) + alpha (e^(min(z, 0) / alpha) - 1)
                                                      dz = dy * ([z >= 0] + [z <= 0] e^(min(z, 0) / alpha))
    glu           a, b = z split in two along axis; y = a s, s = sigmoid(b)
                                                      da = dy * s, db = dy * a s (1 - s), dz = [da, db]
    log_softmax   y = z - logsumexp(z)                dz = dy - e^y sum(dy)
    hard_tanh     y = clip(z, -1, 1)                  dz = dy * [-1 <= z <= 1]
    hard_shrink   y = z if |z| > t else 0             dz = dy * [|z| > t]
    soft_shrink   y = z - t sign(z) if |z| > t else 0 dz = dy * [|z| > t]
    tanh_shrink   y = z - tanh z                      dz = dy * tanh^2 z
    sparse_plus   y = 0 (z <= -1), (z + 1)^2 / 4 (-1 < z < 1), z (z >= 1)
                                                      dz = dy * (0, (z + 1) / 2, 1) on the same pieces
    squareplus    y = (z + sqrt(z^2 + b)) / 2         dz = dy * (1 + z / sqrt(z^2 + b)) / 2
    threshold     y = z if z > t else default_value   dz = dy * [z > t]
    log_sigmoid   y = -softplus(-z)                   dz = dy * sigmoid(-z)
    sparse_sigmoid y = clip((z + 1) / 2, 0, 1)        dz = dy * [-1 < z < 1] / 2
    sparsemax     y = max(z - tau, 0) along axis, tau as Keras computes it (see
                  `_sparsemax_pair`)                  dz = dy [y >= 0 side] + dL/dtau dtau/dz

At the kinks (z = 0 for relu) the derivative is taken as TensorFlow's own
gradient takes it, so manual and autodiff agree everywhere.
"""

import functools
import math
from typing import Callable, NamedTuple

import tensorflow as tf

from keras_bp.core import manual_gradient


class ActivationPair(NamedTuple):
    """An activation's forward/backward pair and the name Keras knows it by."""

    name: str
    forward: Callable
    backward: Callable
    config: tuple = ()


def _mask(condition, like):
    return tf.cast(condition, like.dtype)


# --- linear ---------------------------------------------------------------


def _linear_forward(z):
    return z, None


def _linear_backward(saved, dy):
    return dy


# --- relu family ----------------------------------------------------------


def _plain_relu_forward(z):
    y = tf.nn.relu(z)
    return y, y


def _plain_relu_backward(y, dy):
    # NOTE: y > 0 iff z > 0, so the output serves as the mask (TF does the same).
    # ReluGrad is exactly dy * [y > 0], in one fused kernel instead of three ops.
    return tf.raw_ops.ReluGrad(gradients=dy, features=y)


def _relu6_forward(z):
    y = tf.nn.relu6(z)
    return y, y


def _relu6_backward(y, dy):
    # NOTE: 0 < y < 6 iff 0 < z < 6, so the output serves as the mask (TF does the same):
    # Relu6Grad is dy * [0 < y < 6] in one fused kernel (no gradient at z = 0 or 6, as relu6's).
    return tf.raw_ops.Relu6Grad(gradients=dy, features=y)


@functools.lru_cache(maxsize=None)
def _relu_pair(negative_slope=0.0, max_value=None, threshold=0.0):
    """ReLU with Keras's negative_slope a, max_value m, threshold t."""
    a, m, t = negative_slope, max_value, threshold
    config = (("negative_slope", a), ("max_value", m), ("threshold", t))
    if a == 0 and m is None and t == 0:
        return ActivationPair("relu", _plain_relu_forward, _plain_relu_backward, config)
    if a != 0 and m is None and t == 0:
        return _leaky_relu_pair(a)._replace(name="relu", config=config)
    if a == 0 and m == 6 and t == 0:
        return ActivationPair("relu", _relu6_forward, _relu6_backward, config)

    def forward(z):
        # The forward is Keras's own formula (keras.activations.relu).
        if t != 0:
            y = tf.where(z > tf.cast(t, z.dtype), z, tf.zeros_like(z))
        elif m == 6:
            y = tf.nn.relu6(z)
        else:
            y = tf.nn.relu(z)
        if m is not None and not (m == 6 and t == 0):
            y = tf.clip_by_value(y, tf.cast(0.0, z.dtype), tf.cast(m, z.dtype))
        if a != 0:
            y = y - a * tf.nn.relu(tf.cast(t, z.dtype) - z)
        return y, z

    def backward(z, dy):
        t_ = tf.cast(t, z.dtype)
        passes = z > t_
        if m is not None:
            m_ = tf.cast(m, z.dtype)
            # relu6 lets no gradient through at z = 6; clip_by_value does.
            passes &= (z < m_) if (m == 6 and t == 0) else (z <= m_)
        slope = _mask(passes, dy)
        if a != 0:
            slope += a * _mask(z < t_, dy)
        return dy * slope

    return ActivationPair("relu", forward, backward, config)


@functools.lru_cache(maxsize=None)
def _leaky_relu_pair(negative_slope=0.2):
    a = negative_slope

    def forward(z):
        return tf.nn.leaky_relu(z, alpha=a), z

    def backward(z, dy):
        return tf.where(z > 0, dy, a * dy)

    return ActivationPair("leaky_relu", forward, backward, (("negative_slope", a),))


# --- sigmoid, tanh, softmax -------------------------------------------------


def _sigmoid_forward(z):
    y = tf.sigmoid(z)
    return y, y


def _sigmoid_backward(y, dy):
    # NOTE: SigmoidGrad is exactly dy * y * (1 - y), in one fused kernel instead of three ops.
    return tf.raw_ops.SigmoidGrad(y=y, dy=dy)


def _tanh_forward(z):
    y = tf.tanh(z)
    return y, y


def _tanh_backward(y, dy):
    # NOTE: TanhGrad is exactly dy * (1 - y^2), in one fused kernel.
    return tf.raw_ops.TanhGrad(y=y, dy=dy)


@functools.lru_cache(maxsize=None)
def _softmax_pair(axis=-1):
    def forward(z):
        if isinstance(axis, tuple):
            # Keras's multi-axis softmax: exp(z - logsumexp(z)).
            y = tf.exp(z - tf.reduce_logsumexp(z, axis=axis, keepdims=True))
        else:
            y = tf.nn.softmax(z, axis=axis)
        return y, y

    def backward(y, dy):
        return y * (dy - tf.reduce_sum(dy * y, axis=axis, keepdims=True))

    return ActivationPair("softmax", forward, backward, (("axis", axis),))


# --- exponential-linear family ---------------------------------------------


@functools.lru_cache(maxsize=None)
def _elu_pair(alpha=1.0):
    def forward(z):
        y = tf.nn.elu(z)
        if alpha != 1:
            y = tf.where(z > 0, y, alpha * y)
        return y, (z, y)

    def backward(saved, dy):
        z, y = saved
        return tf.where(z > 0, dy, dy * (y + alpha))

    return ActivationPair("elu", forward, backward, (("alpha", alpha),))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _selu_forward(z):
    y = tf.nn.selu(z)
    return y, y


def _selu_backward(y, dy):
    # At z = 0 the slope is scale, as TensorFlow's SeluGrad (outputs < 0 take the other branch).
    return tf.where(y < 0, dy * (y + _SELU_SCALE * _SELU_ALPHA), _SELU_SCALE * dy)


def _softplus_forward(z):
    return tf.math.softplus(z), z


def _softplus_backward(z, dy):
    return dy * tf.sigmoid(z)


def _softsign_forward(z):
    return tf.nn.softsign(z), z


def _softsign_backward(z, dy):
    denominator = 1 + tf.abs(z)
    return dy / (denominator * denominator)


def _silu_forward(z):
    s = tf.sigmoid(z)
    # NOTE: tf.nn.silu is z * sigmoid(z); computing it here lets us keep s.
    return z * s, (z, s)


def _silu_backward(saved, dy):
    z, s = saved
    return dy * s * (1 + z * (1 - s))


@functools.lru_cache(maxsize=None)
def _gelu_pair(approximate=False):
    c = math.sqrt(2 / math.pi)
    k = 0.044715

    def forward(z):
        return tf.nn.gelu(z, approximate=approximate), z

    def backward(z, dy):
        if approximate:
            tanh_u = tf.tanh(c * (z + k * z * z * z))
            return dy * (0.5 * (1 + tanh_u) + 0.5 * z * (1 - tanh_u * tanh_u) * c * (1 + 3 * k * z * z))
        cdf = 0.5 * (1 + tf.math.erf(z / math.sqrt(2)))
        pdf = tf.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return dy * (cdf + z * pdf)

    return ActivationPair("gelu", forward, backward, (("approximate", approximate),))


def _hard_sigmoid_forward(z):
    return tf.nn.relu6(z + tf.constant(3.0, z.dtype)) / tf.constant(6.0, z.dtype), z


def _hard_sigmoid_backward(z, dy):
    return dy * _mask((z > -3) & (z < 3), dy) / 6


def _exponential_forward(z):
    y = tf.exp(z)
    return y, y


def _exponential_backward(y, dy):
    return dy * y


# --- hard and smooth variants of silu ----------------------------------------


def _hard_silu_forward(z):
    h, _ = _hard_sigmoid_forward(z)
    return z * h, (z, h)


def _hard_silu_backward(saved, dy):
    z, h = saved
    # relu6 passes its gradient only strictly inside (0, 6): at z = +-3 the
    # second term is 0, as TensorFlow's autodiff of Keras's hard_silu has it.
    return dy * (h + z * _mask((z > -3) & (z < 3), dy) / 6)


def _mish_forward(z):
    t = tf.tanh(tf.math.softplus(z))
    return z * t, (z, t)


def _mish_backward(saved, dy):
    z, t = saved
    return dy * (t + z * (1 - t * t) * tf.sigmoid(z))


@functools.lru_cache(maxsize=None)
def _celu_pair(alpha=1.0):
    def forward(z):
        # Keras's formula, term for term.
        return tf.maximum(z, 0.0) + alpha * tf.math.expm1(tf.minimum(z, 0.0) / alpha), z

    def backward(z, dy):
        # NOTE: at z = 0 both branches pass (tf.maximum and tf.minimum give
        # the gradient to x on ties), so the slope there is 2, as TF's autodiff.
        return dy * (_mask(z >= 0, dy) + _mask(z <= 0, dy) * tf.exp(tf.minimum(z, 0.0) / alpha))

    return ActivationPair("celu", forward, backward, (("alpha", alpha),))


@functools.lru_cache(maxsize=None)
def _glu_pair(axis=-1):
    def forward(z):
        if z.shape[axis] is not None and z.shape[axis] % 2 != 0:
            raise ValueError(
                f"axis size must be divisible by 2. Received: x.shape={z.shape} with axis={axis}"
            )
        a, b = tf.split(z, num_or_size_splits=2, axis=axis)
        s = tf.sigmoid(b)
        return a * s, (a, s)

    def backward(saved, dy):
        a, s = saved
        da = dy * s
        db = dy * a * s * (1 - s)
        return tf.concat([da, db], axis=axis)

    return ActivationPair("glu", forward, backward, (("axis", axis),))


# --- log-probabilities --------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _log_softmax_pair(axis=-1):
    def forward(z):
        if axis is None:
            # As Keras: over every element (tf would take None as -1).
            y = tf.reshape(tf.nn.log_softmax(tf.reshape(z, [-1]), axis=-1), tf.shape(z))
        elif isinstance(axis, tuple):
            # As keras.ops.log_softmax: the kept axes first, the others flattened into one.
            kept = [v for v in range(len(z.shape)) if v not in axis]
            order = (*kept, *axis)
            moved = tf.transpose(z, order)
            flat = tf.reshape(moved, (*[tf.shape(z)[v] for v in kept], -1))
            y = tf.reshape(tf.nn.log_softmax(flat, axis=-1), tf.shape(moved))
            y = tf.transpose(y, sorted(range(len(order)), key=order.__getitem__))
        else:
            y = tf.nn.log_softmax(z, axis=axis)
        return y, y

    def backward(y, dy):
        return dy - tf.exp(y) * tf.reduce_sum(dy, axis=axis, keepdims=True)

    return ActivationPair("log_softmax", forward, backward, (("axis", axis),))


def _log_sigmoid_forward(z):
    return tf.math.log_sigmoid(z), z


def _log_sigmoid_backward(z, dy):
    return dy * tf.sigmoid(-z)


# --- piecewise-linear and shrinking -------------------------------------------


def _hard_tanh_forward(z):
    return tf.clip_by_value(z, clip_value_min=-1.0, clip_value_max=1.0), z


def _hard_tanh_backward(z, dy):
    # clip_by_value lets the gradient through at the bounds themselves.
    return dy * _mask((z >= -1) & (z <= 1), dy)


@functools.lru_cache(maxsize=None)
def _hard_shrink_pair(threshold=0.5):
    def forward(z):
        return tf.where(tf.abs(z) > threshold, z, tf.zeros_like(z)), z

    def backward(z, dy):
        return dy * _mask(tf.abs(z) > threshold, dy)

    return ActivationPair("hard_shrink", forward, backward, (("threshold", threshold),))


@functools.lru_cache(maxsize=None)
def _soft_shrink_pair(threshold=0.5):
    def forward(z):
        y = tf.where(z > threshold, z - threshold, tf.where(z < -threshold, z + threshold, tf.zeros_like(z)))
        return y, z

    def backward(z, dy):
        return dy * _mask((z > threshold) | (z < -threshold), dy)

    return ActivationPair("soft_shrink", forward, backward, (("threshold", threshold),))


def _tanh_shrink_forward(z):
    t = tf.math.tanh(z)
    return z - t, t


def _tanh_shrink_backward(t, dy):
    return dy * t * t


def _sparse_plus_forward(z):
    y = tf.where(z <= -1, tf.zeros_like(z), tf.where(z < 1, (1 / 4) * tf.pow(z + 1, 2), z))
    return y, z


def _sparse_plus_backward(z, dy):
    return tf.where(z <= -1, tf.zeros_like(dy), tf.where(z < 1, dy * (z + 1) / 2, dy))


def _sparse_sigmoid_forward(z):
    one = tf.constant(1.0, dtype=z.dtype)
    y = tf.where(z <= -1, tf.constant(0.0, dtype=z.dtype), tf.where(z >= 1, one, 0.5 * (z + 1)))
    return y, z


def _sparse_sigmoid_backward(z, dy):
    return dy * _mask((z > -1) & (z < 1), dy) / 2


@functools.lru_cache(maxsize=None)
def _squareplus_pair(b=4):
    def forward(z):
        root = tf.sqrt(tf.square(z) + tf.cast(b, z.dtype))
        return (z + root) / 2, (z, root)

    def backward(saved, dy):
        z, root = saved
        return dy * (1 + z / root) / 2

    return ActivationPair("squareplus", forward, backward, (("b", b),))


@functools.lru_cache(maxsize=None)
def _threshold_pair(threshold=None, default_value=None):
    def forward(z):
        if threshold is None or default_value is None:
            # As keras.activations.threshold called without its two options.
            raise TypeError("threshold() missing 2 required positional arguments: 'threshold' and 'default_value'")
        return tf.where(z > threshold, z, tf.cast(default_value, z.dtype)), z

    def backward(z, dy):
        return dy * _mask(z > threshold, dy)

    config = (("threshold", threshold), ("default_value", default_value))
    return ActivationPair("threshold", forward, backward, config)


# --- sparsemax ----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _sparsemax_pair(axis=-1):
    """Sparsemax along `axis`, with Keras's (TensorFlow backend's) threshold tau.

    Forward, as Keras: zs = z sorted descending along the axis, C_j = zs_1 + ... + zs_j,
    S = {j : zs_j - (C_j - 1) / j > 0} (the support, a prefix), k = |S|,

        tau = (sum_{j in S} C_j - 1) / k,      y = max(z - tau, 0).

    NOTE: Keras 3.15.1 sums the cumulative sums over S where the textbook
    sparsemax takes C_k alone; the outputs then need not sum to 1. We follow
    Keras's numbers (a drop-in) and differentiate that formula.

    Backward (S and k are piecewise constant):
        dL/dtau  = -sum_i dy_i [z_i - tau >= 0]              (tf.maximum passes ties to x)
        dtau/dzs_m = n_m / k,  n_m = #{j in S : j >= m}     (C_j holds zs_m for j >= m)
        dz_i     = dy_i [z_i - tau >= 0] + dL/dtau n_(rank of i) / k
    """

    def forward(z):
        order = tf.argsort(z, axis=axis, direction="DESCENDING")
        zs = tf.sort(z, direction="DESCENDING", axis=axis)
        cumsum = tf.cumsum(zs, axis=axis)
        r = tf.range(1, tf.shape(z)[axis] + 1, dtype=z.dtype)
        r_shape = [1] * len(z.shape)
        r_shape[axis] = -1
        r = tf.reshape(r, r_shape)
        support = zs - (cumsum - 1) / r > 0
        k = tf.reduce_sum(tf.cast(support, z.dtype), axis=axis, keepdims=True)
        tau = (tf.reduce_sum(tf.where(support, cumsum, tf.zeros_like(cumsum)), axis=axis, keepdims=True) - 1) / k
        shifted = z - tau
        y = tf.maximum(shifted, 0.0)
        # n_m in sorted order, then back at each element's own position.
        n_sorted = tf.cumsum(tf.cast(support, z.dtype), axis=axis, reverse=True)
        rank = tf.argsort(order, axis=axis)
        n = tf.experimental.numpy.take_along_axis(n_sorted, rank, axis=axis)
        return y, (shifted >= 0, n, k)

    def backward(saved, dy):
        passes, n, k = saved
        dy_passed = dy * _mask(passes, dy)
        d_tau = -tf.reduce_sum(dy_passed, axis=axis, keepdims=True)
        return dy_passed + d_tau * n / k

    return ActivationPair("sparsemax", forward, backward, (("axis", axis),))


# --- lookup ------------------------------------------------------------------

_PAIRS = {
    "linear": ActivationPair("linear", _linear_forward, _linear_backward),
    "relu": _relu_pair(),
    "relu6": _relu_pair(max_value=6.0)._replace(name="relu6"),
    "leaky_relu": _leaky_relu_pair(),
    "sigmoid": ActivationPair("sigmoid", _sigmoid_forward, _sigmoid_backward),
    "tanh": ActivationPair("tanh", _tanh_forward, _tanh_backward),
    "softmax": _softmax_pair(),
    "elu": _elu_pair(),
    "selu": ActivationPair("selu", _selu_forward, _selu_backward),
    "softplus": ActivationPair("softplus", _softplus_forward, _softplus_backward),
    "softsign": ActivationPair("softsign", _softsign_forward, _softsign_backward),
    "silu": ActivationPair("silu", _silu_forward, _silu_backward),
    "swish": ActivationPair("silu", _silu_forward, _silu_backward),
    "gelu": _gelu_pair(),
    "hard_sigmoid": ActivationPair("hard_sigmoid", _hard_sigmoid_forward, _hard_sigmoid_backward),
    "exponential": ActivationPair("exponential", _exponential_forward, _exponential_backward),
    "hard_silu": ActivationPair("hard_silu", _hard_silu_forward, _hard_silu_backward),
    "hard_swish": ActivationPair("hard_silu", _hard_silu_forward, _hard_silu_backward),
    "mish": ActivationPair("mish", _mish_forward, _mish_backward),
    "celu": _celu_pair(),
    "glu": _glu_pair(),
    "log_softmax": _log_softmax_pair(),
    "log_sigmoid": ActivationPair("log_sigmoid", _log_sigmoid_forward, _log_sigmoid_backward),
    "hard_tanh": ActivationPair("hard_tanh", _hard_tanh_forward, _hard_tanh_backward),
    "hard_shrink": _hard_shrink_pair(),
    "soft_shrink": _soft_shrink_pair(),
    "tanh_shrink": ActivationPair("tanh_shrink", _tanh_shrink_forward, _tanh_shrink_backward),
    "sparse_plus": ActivationPair("sparse_plus", _sparse_plus_forward, _sparse_plus_backward),
    "sparse_sigmoid": ActivationPair("sparse_sigmoid", _sparse_sigmoid_forward, _sparse_sigmoid_backward),
    "squareplus": _squareplus_pair(),
    "sparsemax": _sparsemax_pair(),
}

# Known to keras.activations but unusable by name alone: threshold needs its
# `threshold` and `default_value` (Keras's layer fails when called, and so
# does ours); not in SUPPORTED.
_NEEDS_OPTIONS = {"threshold": _threshold_pair()}

SUPPORTED = tuple(sorted(_PAIRS))


def get(identifier):
    """Returns the `ActivationPair` for a name, a `keras.activations` function or a pair.

    Args:
        identifier: `None` (linear), a name such as `"relu"`, a function from
            `keras.activations` (matched by name), or an `ActivationPair`.

    Raises:
        ValueError: for anything else, listing the supported names.
    """
    if identifier is None:
        return _PAIRS["linear"]
    if isinstance(identifier, ActivationPair):
        return identifier
    name = identifier
    if callable(identifier) and not isinstance(identifier, str):
        name = getattr(identifier, "__name__", None)
    if isinstance(name, str) and name in _PAIRS:
        return _PAIRS[name]
    if isinstance(name, str) and name in _NEEDS_OPTIONS:
        return _NEEDS_OPTIONS[name]
    raise ValueError(
        f"Unknown activation: {identifier!r}. keras_bp supports these "
        f"activations (by name or as keras.activations functions): {', '.join(SUPPORTED)}."
    )


# The activations that take options (the keyword arguments of their
# keras.activations namesakes), by name.
_WITH_OPTIONS = {
    "relu": _relu_pair,
    "leaky_relu": _leaky_relu_pair,
    "softmax": _softmax_pair,
    "elu": _elu_pair,
    "gelu": _gelu_pair,
    "celu": _celu_pair,
    "glu": _glu_pair,
    "log_softmax": _log_softmax_pair,
    "hard_shrink": _hard_shrink_pair,
    "soft_shrink": _soft_shrink_pair,
    "squareplus": _squareplus_pair,
    "threshold": _threshold_pair,
    "sparsemax": _sparsemax_pair,
}


def configured(name, **options):
    """The `ActivationPair` for `name` with options, as keras_bp's layers use it.

        configured("relu", negative_slope=0.1, max_value=6.0, threshold=0.0)
        configured("softmax", axis=(1, 2))

    The options are the keyword arguments of the `keras.activations` function
    of that name (see `_WITH_OPTIONS` for the names); equal options give the
    same (cached) pair.
    """
    if name not in _WITH_OPTIONS:
        raise ValueError(
            f"Activation {name!r} takes no options; these do: {', '.join(sorted(_WITH_OPTIONS))}."
        )
    return _WITH_OPTIONS[name](**options)


def serialize(pair):
    """The name Keras's `get_config` uses for an activation."""
    return pair.name


@functools.lru_cache(maxsize=None)
def _op(pair):
    return manual_gradient(pair.forward, pair.backward, name=pair.name)


# Activations whose output is a probability: like keras.activations, they
# leave their input on the output as `_keras_logits`, so that a
# cross-entropy loss after them (Keras's or keras_bp's) computes from the
# logits: more stable, and the whole backward is p - y in one step (the
# activation's own backward never runs).
_LOGIT_ACTIVATIONS = ("softmax", "sigmoid")


def fused_and_after(pair):
    """How a layer applies its activation: (the part fused into its op, the op after it or None).

    Softmax and sigmoid run as an op of their own after the layer's linear
    part, so that the output carries its logits (`_keras_logits`) for a
    cross-entropy, as Keras's layers do (and softmax takes the last axis,
    as `keras.activations.softmax` does); every other activation's
    derivative is fused into the layer's backward.
    """
    if pair.name in _LOGIT_ACTIVATIONS:
        return get(None), pair
    return pair, None


def apply(pair, x):
    """Applies an `ActivationPair` to `x` as a manual-gradient op."""
    y = _op(pair)(x)
    if pair.name in _LOGIT_ACTIVATIONS:
        try:
            y._keras_logits = x
        except AttributeError:  # a tensor type that takes no attributes
            pass
    return y


# --- drop-ins for keras.activations ----------------------------------------


def linear(x):
    return x


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    return apply(_relu_pair(float(negative_slope), max_value, float(threshold)), x)


def relu6(x):
    return apply(_PAIRS["relu6"], x)


def leaky_relu(x, negative_slope=0.2):
    return apply(_leaky_relu_pair(float(negative_slope)), x)


def sigmoid(x):
    return apply(_PAIRS["sigmoid"], x)


def tanh(x):
    return apply(_PAIRS["tanh"], x)


def softmax(x, axis=-1):
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    return apply(_softmax_pair(axis), x)


def elu(x, alpha=1.0):
    return apply(_elu_pair(float(alpha)), x)


def selu(x):
    return apply(_PAIRS["selu"], x)


def softplus(x):
    return apply(_PAIRS["softplus"], x)


def softsign(x):
    return apply(_PAIRS["softsign"], x)


def silu(x):
    return apply(_PAIRS["silu"], x)


swish = silu


def gelu(x, approximate=False):
    return apply(_gelu_pair(bool(approximate)), x)


def hard_sigmoid(x):
    return apply(_PAIRS["hard_sigmoid"], x)


def exponential(x):
    return apply(_PAIRS["exponential"], x)


def hard_silu(x):
    return apply(_PAIRS["hard_silu"], x)


hard_swish = hard_silu


def mish(x):
    return apply(_PAIRS["mish"], x)


def celu(x, alpha=1.0):
    return apply(_celu_pair(float(alpha)), x)


def glu(x, axis=-1):
    return apply(_glu_pair(axis), x)


def log_softmax(x, axis=-1):
    return apply(_log_softmax_pair(axis), x)


def log_sigmoid(x):
    return apply(_PAIRS["log_sigmoid"], x)


def hard_tanh(x):
    return apply(_PAIRS["hard_tanh"], x)


def hard_shrink(x, threshold=0.5):
    return apply(_hard_shrink_pair(float(threshold)), x)


def soft_shrink(x, threshold=0.5):
    return apply(_soft_shrink_pair(float(threshold)), x)


def tanh_shrink(x):
    return apply(_PAIRS["tanh_shrink"], x)


def sparse_plus(x):
    return apply(_PAIRS["sparse_plus"], x)


def sparse_sigmoid(x):
    return apply(_PAIRS["sparse_sigmoid"], x)


def squareplus(x, b=4):
    return apply(_squareplus_pair(b), x)


def threshold(x, threshold, default_value):
    return apply(_threshold_pair(threshold, default_value), x)


def sparsemax(x, axis=-1):
    return apply(_sparsemax_pair(axis), x)
