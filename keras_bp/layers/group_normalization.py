"""GroupNormalization: y = gamma (x - mu_g) / sqrt(var_g + eps) + beta, statistics per example and channel group.

The channels (axis `axis`, C of them) are split into G = `groups` groups of
C / G; x is viewed as x_g with a group axis before the channel axis,

    x_g  : (batch, ..., G, C/G)          (the group axis inserted at `axis`)
    S    = every axis of x_g but the batch and the group axis, N = |S|
    mu   = mean over S of x_g            (batch, 1, ..., G, 1)
    var  = mean over S of (x_g - mu)^2   (biased, as tf.nn.moments)
    s    = 1 / sqrt(var + epsilon)
    xhat = (x_g - mu) s
    y_g  = gamma xhat + beta             (gamma, beta: (C,), viewed as (G, C/G))

and y is y_g in x's shape. The backward is layer normalization's with S the
group's elements (`normalize_backward`, derived in
keras_bp/layers/normalization.py, computed from its sums by `dx_from_sums`);
with g = dy gamma = dL/dxhat:

    dx     = (s / N) (N g - sum_S(g) - xhat sum_S(g xhat))   (input's shape)
    dgamma = sum over the batch and the spatial axes of dy xhat   (C,)
    dbeta  = sum over the batch and the spatial axes of dy        (C,)

groups = 1 is layer normalization over all but the batch axis, groups = C
(or -1) instance normalization.
"""

from typing import NamedTuple, Optional

import keras
import tensorflow as tf

from keras_bp._validation import invalid
from keras_bp.core import manual_gradient
from keras_bp.layers._weight_options import add_weight_with_options, set_weight_options, weight_options_config
from keras_bp.layers.normalization import dx_from_sums, moments, normalize_forward


class GroupNormSaved(NamedTuple):
    """What the backward of group normalization needs."""

    xg: tf.Tensor  # x viewed with the group axis (batch, ..., G, C/G)
    mean: tf.Tensor  # mu per example and group, S axes kept as 1
    s: tf.Tensor  # 1 / sqrt(var + epsilon), same shape as mean
    gamma: Optional[tf.Tensor]  # gamma viewed as (1, ..., G, C/G, ..., 1), or None
    has_beta: bool


def group_norm_op(axis, groups, epsilon):
    """(x, gamma, beta) -> y over `groups` channel groups along `axis`; gamma and beta are (C,) or None."""

    def layout(rank):
        """The group axis of x_g (the channel axis of x) and S, the axes of x_g reduced over."""
        a = axis % rank
        return a, [i for i in range(1, rank + 1) if i != a]

    def grouped(t, a):
        """t with its channel axis a split into (G, C/G)."""
        shape = tf.unstack(tf.shape(t))
        return tf.reshape(t, shape[:a] + [groups, shape[a] // groups] + shape[a + 1 :])

    def param_view(p, rank, a):
        """A (C,) parameter viewed as (1, ..., G, C/G, ..., 1) against x_g."""
        shape = [1] * (rank + 1)
        shape[a], shape[a + 1] = groups, -1
        return tf.reshape(p, shape)

    def forward(x, gamma, beta):
        rank = x.shape.rank
        a, reduction = layout(rank)
        xg = grouped(x, a)
        gamma_g = None if gamma is None else param_view(gamma, rank, a)
        beta_g = None if beta is None else param_view(beta, rank, a)
        mean, variance = moments(xg, reduction)
        s = tf.math.rsqrt(variance + epsilon)
        yg = normalize_forward(xg, mean, variance, gamma_g, beta_g, epsilon)
        return tf.reshape(yg, tf.shape(x)), GroupNormSaved(xg, mean, s, gamma_g, beta is not None)

    def backward(saved, dy):
        rank = saved.xg.shape.rank - 1
        a, reduction = layout(rank)
        dyg = grouped(dy, a)
        centered = saved.xg - saved.mean
        # gamma is constant over the spatial axes (S less the C/G axis a + 1):
        # sum there first, then every other sum is over small tensors.
        spatial = [i for i in reduction if i != a + 1]
        sum_dy = tf.reduce_sum(dyg, spatial, keepdims=True)  # (batch, 1.., G, C/G)
        sum_dy_centered = tf.reduce_sum(dyg * centered, spatial, keepdims=True)
        gamma = 1.0 if saved.gamma is None else saved.gamma
        dxg = dx_from_sums(
            dyg * (gamma * saved.s), centered, saved.s,
            tf.reduce_sum(gamma * sum_dy, [a + 1], keepdims=True),  # sum over S of g = dy gamma
            tf.reduce_sum(gamma * sum_dy_centered, [a + 1], keepdims=True),  # sum over S of g (x - mu)
            reduction,
        )
        # gamma and beta: summed over every axis of x_g but (G, C/G), then (C,).
        other = [i for i in range(rank + 1) if i not in (a, a + 1)]
        dgamma = None if saved.gamma is None else tf.reshape(
            tf.reduce_sum(saved.s * sum_dy_centered, other), [-1])  # sum of dy xhat
        dbeta = tf.reshape(tf.reduce_sum(sum_dy, other), [-1]) if saved.has_beta else None
        return tf.reshape(dxg, tf.shape(dy)), dgamma, dbeta

    return manual_gradient(forward, backward, name="group_normalization")


@keras.saving.register_keras_serializable(package="keras_bp")
class GroupNormalization(keras.layers.Layer):
    """Group normalization (Wu and He, 2018) (drop-in for `keras.layers.GroupNormalization`).

    Normalizes each example over groups of channels, as in this module's
    docstring; independent of the batch size, the same in training and
    inference.

    Args:
        groups: Integer, the number of groups G; the channels must be a
            multiple of it. -1 takes G = C (instance normalization).
        axis: Integer, the channel axis.
        epsilon: Small float added to the variance.
        center: Whether to add the offset `beta`.
        scale: Whether to multiply by `gamma`.
        beta_initializer, gamma_initializer: Initializers of the weights.
        beta_regularizer, gamma_regularizer: Optional regularizers.
        beta_constraint, gamma_constraint: Optional constraints.

    Input shape: any, channels along `axis`. Output shape: the input's.
    Weights: `gamma` then `beta`, each of shape (C,).
    """

    def __init__(
        self,
        groups=32,
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
        # Keras's check and words lead (an int: Keras's isinstance test).
        if not isinstance(groups, int) or (groups <= 0 and groups != -1):
            raise invalid(
                "groups", groups, "a positive integer or -1",
                lead="Received an invalid value for argument `groups`, expected a positive integer "
                "(or `-1` for instance normalization).",
            )
        super().__init__(**kwargs)
        self.supports_masking = True
        # As Keras: the statistics are computed in float32 at least.
        self.autocast = False
        self.groups = groups
        self.axis = axis
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        set_weight_options(
            self,
            beta=(beta_initializer, beta_regularizer, beta_constraint),
            gamma=(gamma_initializer, gamma_regularizer, gamma_constraint),
        )

    def build(self, input_shape):
        dim = input_shape[self.axis]
        if dim is None:
            raise ValueError(
                f"Axis {self.axis} of input tensor should have a defined dimension but the layer received "
                f"an input with shape {input_shape}."
            )
        if self.groups == -1:
            self.groups = dim
        if dim < self.groups:
            raise ValueError(f"Number of groups ({self.groups}) cannot be more than the number of channels ({dim}).")
        if dim % self.groups != 0:
            # Keras's words (the channels must be a multiple of the groups).
            raise ValueError(f"Number of groups ({self.groups}) must be a multiple of the number of channels ({dim}).")
        self.input_spec = keras.layers.InputSpec(ndim=len(input_shape), axes={self.axis: dim})
        self.gamma = add_weight_with_options(self, "gamma", (dim,), autocast=False) if self.scale else None
        self.beta = add_weight_with_options(self, "beta", (dim,), autocast=False) if self.center else None
        self._op = group_norm_op(self.axis, self.groups, self.epsilon)

    def call(self, inputs):
        # NOTE: as Keras, float16/bfloat16 inputs are normalized in float32 (they overflow otherwise).
        compute = keras.backend.result_type(inputs.dtype, "float32")
        x = tf.cast(inputs, compute)
        gamma = None if self.gamma is None else tf.cast(tf.convert_to_tensor(self.gamma), compute)
        beta = None if self.beta is None else tf.cast(tf.convert_to_tensor(self.beta), compute)
        y = tf.cast(self._op(x, gamma, beta), inputs.dtype)
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        axes = [self.axis] if isinstance(self.axis, int) else self.axis
        for axis in axes:
            if axis >= len(input_shape) or axis < -len(input_shape):
                raise ValueError(f"Axis {axis} is out of bounds for input shape {input_shape}. Received: axis={self.axis}")
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "groups": self.groups,
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **weight_options_config(self, "beta", "gamma"),
        }
