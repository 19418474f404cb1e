"""Losses with hand-derived backward passes.

Each loss computes a per-sample error e (one value per sample, the last axis
reduced) with a manual-gradient op; the weighted reduction over the batch
(`reduction`, `sample_weight`, masks) is Keras's own `keras.losses.Loss`
machinery, a linear map whose gradient is the sample weight divided by the
count. Symbols: t = y_true (target), p = y_pred (prediction), z = logits,
n = size of the reduced axis, de = upstream gradient of e.

MeanSquaredError:  e = 1/n sum (p - t)^2
    de/dp = 2 (p - t) / n                de/dt = -de/dp
HalfSquaredError:  E = 1/2 sum (t - o)^2   (the textbook error, o = p)
    dE/do = o - t                        dE/dt = t - o
BinaryCrossentropy, from probabilities (Keras clips p to [eps, 1 - eps]):
    q = clip(p),  e = -1/n sum [t log q + (1 - t) log(1 - q)]
    de/dp = 1/n (-t/q + (1 - t)/(1 - q)) * [eps <= p <= 1 - eps]
    de/dt = -1/n (log q - log(1 - q))
  from logits (stable form max(z, 0) - z t + log(1 + e^-|z|)):
    de/dz = 1/n (sigmoid(z) - t)         de/dt = -z / n
CategoricalCrossentropy, from probabilities (Keras renormalises, then clips):
    s = sum_k p_k,  r = p / s,  q = clip(r),  e = -sum_k t_k log q_k
    de/dq = -t / q,  de/dr = de/dq * [eps <= r <= 1 - eps]
    de/dp_j = (de/dr_j - sum_k de/dr_k r_k) / s       (through r = p / s)
    de/dt = -log q
  from logits: e = -sum_k t_k log softmax(z)_k = logsumexp(z) sum_k t_k - sum_k t_k z_k
    de/dz = softmax(z) sum_k t_k - t  =  p - t  for a one-hot (or smoothed) t
    NOTE: TensorFlow's fused op returns p - t even when t does not sum to 1;
    this is the exact derivative, so the two differ only for such targets.
    de/dt = -log softmax(z)
  Softmax followed by this loss from probabilities: with p = softmax(z) and no
  clipping active, s = 1, de/dp = -t/p, and the softmax backward
  dz = p * (de/dp - sum_k de/dp_k p_k) = p * (-t/p + sum_k t_k) = p - t.
  The same p - t, reached in two hand-derived steps.
SparseCategoricalCrossentropy: integer class c per sample; as Keras,
    from probabilities: q = clip(p), e = -log(q_c / sum_k q_k)
    de/dp = (1 / sum_k q_k - onehot(c) / q) * [eps <= p <= 1 - eps]
    from logits: e = -log softmax(z)_c,  de/dz = softmax(z) - onehot(c)
  Samples whose class is `ignore_class` get e = 0 and no gradient.
Label smoothing (binary: t' = t (1 - a) + a / 2; categorical: t' = t (1 - a) + a / n)
multiplies de/dt by (1 - a).
"""

import keras
import tensorflow as tf

from keras_bp._validation import check_int, check_unit_interval
from keras_bp.core import manual_gradient

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "HalfSquaredError",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
]


def _epsilon(dtype):
    return tf.cast(keras.config.epsilon(), dtype)


def _between(p, low, high):
    # NOTE: tf.clip_by_value passes the gradient at the bounds themselves.
    return tf.cast((p >= low) & (p <= high), p.dtype)


# --- squared errors ------------------------------------------------------------


def mse_forward(t, p):
    difference = p - t
    return tf.reduce_mean(tf.square(difference), axis=-1), difference


def mse_backward(difference, de):
    n = tf.cast(tf.shape(difference)[-1], difference.dtype)
    dp = de[..., None] * 2 * difference / n
    return -dp, dp


def half_squared_error_forward(t, o):
    difference = o - t
    return 0.5 * tf.reduce_sum(tf.square(difference), axis=-1), difference


def half_squared_error_backward(difference, de):
    do = de[..., None] * difference
    return -do, do


_mse = manual_gradient(mse_forward, mse_backward, name="mean_squared_error")
_half_squared_error = manual_gradient(
    half_squared_error_forward, half_squared_error_backward, name="half_squared_error"
)


# --- binary cross-entropy ----------------------------------------------------------


def _bce_probabilities_forward(t, p):
    eps = _epsilon(p.dtype)
    q = tf.clip_by_value(p, eps, 1 - eps)
    log_q, log_1mq = tf.math.log(q), tf.math.log(1 - q)
    e = -(t * log_q + (1 - t) * log_1mq)
    return e, (t, p, q, log_q, log_1mq)


def _bce_probabilities_backward(saved, de):
    t, p, q, log_q, log_1mq = saved
    eps = _epsilon(p.dtype)
    dp = de * (-t / q + (1 - t) / (1 - q)) * _between(p, eps, 1 - eps)
    dt = -de * (log_q - log_1mq)
    return dt, dp


def _bce_logits_forward(t, z):
    e = tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=z)
    return e, (t, z)


def _bce_logits_backward(saved, de):
    t, z = saved
    return -de * z, de * (tf.sigmoid(z) - t)


def _mean_over_axis(elementwise, axis):
    """Wraps an elementwise (e, de) pair with a mean over `axis`: de_i = de / n."""
    forward_e, backward_e = elementwise

    def forward(t, p):
        e, saved = forward_e(t, p)
        return tf.reduce_mean(e, axis=axis), (saved, tf.shape(e))

    def backward(saved, de):
        saved_e, shape = saved
        n = tf.cast(shape[axis], de.dtype)
        de_elementwise = tf.broadcast_to(tf.expand_dims(de, axis) / n, shape)
        return backward_e(saved_e, de_elementwise)

    return forward, backward


# --- categorical cross-entropy ----------------------------------------------------------


def _cce_probabilities_forward(axis, t, p):
    s = tf.reduce_sum(p, axis, keepdims=True)
    r = p / s
    eps = _epsilon(p.dtype)
    q = tf.clip_by_value(r, eps, 1 - eps)
    log_q = tf.math.log(q)
    return -tf.reduce_sum(t * log_q, axis), (t, s, r, q, log_q)


def _cce_probabilities_backward(axis, saved, de):
    t, s, r, q, log_q = saved
    de = tf.expand_dims(de, axis)
    eps = _epsilon(r.dtype)
    dr = de * (-t / q) * _between(r, eps, 1 - eps)
    dp = (dr - tf.reduce_sum(dr * r, axis, keepdims=True)) / s
    dt = -de * log_q
    return dt, dp


def _cce_logits_forward(axis, t, z):
    log_p = tf.nn.log_softmax(z, axis=axis)
    return -tf.reduce_sum(t * log_p, axis), (t, log_p)


def _cce_logits_backward(axis, saved, de):
    t, log_p = saved
    de = tf.expand_dims(de, axis)
    p = tf.exp(log_p)
    dz = de * (p * tf.reduce_sum(t, axis, keepdims=True) - t)
    return -de * log_p, dz


# --- sparse categorical cross-entropy --------------------------------------------------


def _scce_forward(from_logits, ignore_class, c, p):
    c = tf.cast(c, tf.int32)
    valid = None
    if ignore_class is not None:
        valid = tf.not_equal(c, ignore_class)
        c = tf.where(valid, c, tf.zeros_like(c))
    classes = tf.shape(p)[-1]
    onehot = tf.one_hot(c, classes, dtype=p.dtype)
    if from_logits:
        log_q = p
    else:
        eps = _epsilon(p.dtype)
        log_q = tf.math.log(tf.clip_by_value(p, eps, 1 - eps))
    log_softmax = tf.nn.log_softmax(log_q, axis=-1)
    e = -tf.reduce_sum(onehot * log_softmax, axis=-1)
    if valid is not None:
        e = tf.where(valid, e, tf.zeros_like(e))
    return e, (p, onehot, log_softmax, valid)


def _scce_backward(from_logits, saved, de):
    p, onehot, log_softmax, valid = saved
    if valid is not None:
        de = tf.where(valid, de, tf.zeros_like(de))
    de = de[..., None]
    softmax_q = tf.exp(log_softmax)
    if from_logits:
        return None, de * (softmax_q - onehot)
    eps = _epsilon(p.dtype)
    q = tf.clip_by_value(p, eps, 1 - eps)
    # d(-log softmax(log q)_c)/d log q = softmax(log q) - onehot; d log q / dp = 1/q.
    return None, de * (softmax_q - onehot) / q * _between(p, eps, 1 - eps)


# --- the Loss classes ---------------------------------------------------------------------


def _to_same_rank(y_true, y_pred):
    """Keras's rule for a target and a prediction whose ranks differ by one, before any loss.

    The one with the extra trailing axis of length 1 loses it, except that a
    rank-1 other side gains one instead: (3,) against (3, 1) compares as
    (3, 1) against (3, 1), never broadcast to (3, 3).
    """
    true_rank, pred_rank = len(y_true.shape), len(y_pred.shape)
    if true_rank == pred_rank + 1 and y_true.shape[-1] == 1:
        if pred_rank == 1:
            y_pred = tf.expand_dims(y_pred, -1)
        else:
            y_true = tf.squeeze(y_true, -1)
    elif pred_rank == true_rank + 1 and y_pred.shape[-1] == 1:
        if true_rank == 1:
            y_true = tf.expand_dims(y_true, -1)
        else:
            y_pred = tf.squeeze(y_pred, -1)
    return y_true, y_pred


def _check_same_shape(y_true, y_pred):
    """Raises as Keras's cross-entropies do unless the shapes agree where both are known."""
    if len(y_true.shape) != len(y_pred.shape) or any(
        t is not None and p is not None and t != p for t, p in zip(y_true.shape, y_pred.shape)
    ):
        raise ValueError(
            "Arguments `target` and `output` must have the same shape. "
            f"Received: target.shape={y_true.shape}, output.shape={y_pred.shape}"
        )


class _ManualLoss(keras.losses.Loss):
    """A `keras.losses.Loss` whose per-sample error is a manual-gradient op."""

    _logits_op = None

    def _op_and_input(self, y_pred):
        """The op to run and its prediction input: the logits when y_pred carries them.

        As Keras's cross-entropies do: a probability from keras_bp's or
        Keras's softmax or sigmoid carries its logits as `_keras_logits`, and
        the loss then computes from them (the `from_logits=True` op).
        """
        logits = getattr(y_pred, "_keras_logits", None)
        if self._logits_op is not None and not self.from_logits and logits is not None:
            return self._logits_op, tf.convert_to_tensor(logits)
        return self._op, tf.convert_to_tensor(y_pred)

    def _set_ops(self, logits_pair, probabilities_pair):
        """The from-logits op (also used after a softmax or sigmoid) and the op `from_logits` picks."""
        self._logits_op = manual_gradient(*logits_pair, name=self.name)
        self._op = self._logits_op if self.from_logits else manual_gradient(*probabilities_pair, name=self.name)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        y_true, y_pred = _to_same_rank(tf.cast(y_true, y_pred.dtype), y_pred)
        return self._op(y_true, y_pred)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}


class _SmoothedCrossentropy(_ManualLoss):
    """What BinaryCrossentropy and CategoricalCrossentropy share: from_logits, label_smoothing, axis."""

    def __init__(self, from_logits, label_smoothing, axis, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.label_smoothing = check_unit_interval("label_smoothing", label_smoothing)
        self.axis = check_int("axis", axis)

    def call(self, y_true, y_pred):
        op, y_pred = self._op_and_input(y_pred)
        y_true, y_pred = _to_same_rank(tf.cast(y_true, y_pred.dtype), y_pred)
        _check_same_shape(y_true, y_pred)
        if self.label_smoothing:
            y_true = self._smooth(y_true)
        return op(y_true, y_pred)

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "axis": self.axis,
        }


@keras.saving.register_keras_serializable(package="keras_bp")
class MeanSquaredError(_ManualLoss):
    """Mean of squares of errors, e = mean((y_pred - y_true)^2) over the last axis.

    Drop-in for `keras.losses.MeanSquaredError`.

    Args:
        reduction: Keras reduction: "sum_over_batch_size" (default), "sum",
            "mean", "mean_with_sample_weight", "none" or None.
        name: Name of the loss.
        dtype: The dtype of the loss's computations.
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._op = _mse


@keras.saving.register_keras_serializable(package="keras_bp")
class HalfSquaredError(_ManualLoss):
    """The textbook error E = 1/2 sum (y - o)^2 over the last axis; dE/do = o - y.

    The 1/2 cancels the 2 of the derivative, which is why backpropagation
    texts use it. Reduced over the batch like any Keras loss.

    Args:
        reduction: Keras reduction, as for `MeanSquaredError`.
        name: Name of the loss.
        dtype: The dtype of the loss's computations.
    """

    def __init__(self, reduction="sum_over_batch_size", name="half_squared_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._op = _half_squared_error


@keras.saving.register_keras_serializable(package="keras_bp")
class BinaryCrossentropy(_SmoothedCrossentropy):
    """Binary cross-entropy (drop-in for `keras.losses.BinaryCrossentropy`).

    Args:
        from_logits: Whether `y_pred` holds logits rather than probabilities.
        label_smoothing: Float in [0, 1]; targets become t (1 - a) + a / 2.
        axis: The axis along which the mean is computed. Defaults to -1.
        reduction: Keras reduction, as for `MeanSquaredError`.
        name: Name of the loss.
        dtype: The dtype of the loss's computations.
    """

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="binary_crossentropy",
        dtype=None,
    ):
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)
        self._set_ops(
            _mean_over_axis((_bce_logits_forward, _bce_logits_backward), self.axis),
            _mean_over_axis((_bce_probabilities_forward, _bce_probabilities_backward), self.axis),
        )

    def _smooth(self, y_true):
        return y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing


@keras.saving.register_keras_serializable(package="keras_bp")
class CategoricalCrossentropy(_SmoothedCrossentropy):
    """Categorical cross-entropy on one-hot targets (drop-in for `keras.losses.CategoricalCrossentropy`).

    Args:
        from_logits: Whether `y_pred` holds logits rather than probabilities.
        label_smoothing: Float in [0, 1]; targets become t (1 - a) + a / n.
        axis: The class axis. Defaults to -1.
        reduction: Keras reduction, as for `MeanSquaredError`.
        name: Name of the loss.
        dtype: The dtype of the loss's computations.
    """

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)
        a = self.axis
        self._set_ops(
            (lambda t, z: _cce_logits_forward(a, t, z), lambda s, de: _cce_logits_backward(a, s, de)),
            (lambda t, p: _cce_probabilities_forward(a, t, p), lambda s, de: _cce_probabilities_backward(a, s, de)),
        )

    def _smooth(self, y_true):
        n = tf.cast(tf.shape(y_true)[-1], y_true.dtype)
        return y_true * (1.0 - self.label_smoothing) + self.label_smoothing / n


@keras.saving.register_keras_serializable(package="keras_bp")
class SparseCategoricalCrossentropy(_ManualLoss):
    """Cross-entropy on integer class targets (drop-in for `keras.losses.SparseCategoricalCrossentropy`).

    Args:
        from_logits: Whether `y_pred` holds logits rather than probabilities.
        ignore_class: Optional integer class whose samples get zero loss and
            no gradient (for example a padding class in segmentation maps).
        reduction: Keras reduction, as for `MeanSquaredError`.
        axis: The class axis; only -1 is supported, as in Keras.
        name: Name of the loss.
        dtype: The dtype of the loss's computations.
    """

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        axis=-1,
        name="sparse_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_int("axis", axis)  # As Keras: any other axis than -1 is rejected when called.
        check_int("ignore_class", ignore_class, allow_none=True)
        self.from_logits = bool(from_logits)
        self.ignore_class = ignore_class
        self.axis = axis
        self._set_ops(
            (lambda c, z: _scce_forward(True, ignore_class, c, z), lambda s, de: _scce_backward(True, s, de)),
            (lambda c, p: _scce_forward(False, ignore_class, c, p), lambda s, de: _scce_backward(False, s, de)),
        )

    def call(self, y_true, y_pred):
        if self.axis != -1:
            raise ValueError(f"Only axis=-1 is currently supported. Received: axis={self.axis}")
        op, y_pred = self._op_and_input(y_pred)
        y_true, y_pred = _to_same_rank(tf.convert_to_tensor(y_true), y_pred)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = tf.squeeze(y_true, axis=-1)
        if y_true.dtype.is_floating:
            y_true = tf.cast(y_true, tf.int32)
        e = op(y_true, y_pred)
        if self.ignore_class is not None:
            # As Keras: the reduction averages over the samples not ignored.
            e._keras_mask = tf.not_equal(y_true, self.ignore_class)
        return e

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "ignore_class": self.ignore_class,
            "axis": self.axis,
        }
