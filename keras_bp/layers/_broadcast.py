"""Broadcasting's backward: the upstream gradient summed over the axes an input was broadcast along."""

import tensorflow as tf


def sum_to_shape(g, shape):
    """dL/dx for x of `shape` broadcast to g's shape: g summed over the broadcast axes, reshaped to `shape`.

    An axis of x broadcast (size 1, or missing on the left) was read by every
    output along it, so its gradient is the sum of theirs; an axis that was
    not broadcast keeps g as it is.
    """
    _, axes = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(g), s1=tf.cast(shape, tf.int32))
    return tf.reshape(tf.reduce_sum(g, axes), shape)
