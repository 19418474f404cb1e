"""Variable snapshots: the values a check puts back after each pass.

A forward pass in training writes non-trainable state (BatchNormalization's
moving statistics, Dropout's seed generator, metric accumulators), and a
finite difference writes the weights. `check_gradients`, the audit and the
tests save such variables with `snapshot` before a pass and `restore` them
after it, so every pass sees the same random masks and the model is left as
it was found.
"""

import tensorflow as tf

__all__ = ["model_state", "restore", "snapshot"]


def snapshot(variables):
    """(variable, value) pairs, each value read now.

    NOTE: eagerly the value is a NumPy copy (what a test compares); inside a
    `tf.function` it is a tensor read in the graph, and `restore` assigns it
    back in the same graph.
    """
    if tf.executing_eagerly():
        return [(v, v.numpy()) for v in variables]
    return [(v, tf.identity(v.value)) for v in variables]


def restore(saved):
    """Assigns each variable of a `snapshot` its saved value."""
    for variable, value in saved:
        variable.assign(value)


def model_state(model):
    """Every variable a training forward pass of `model` may write, each once.

    BatchNormalization's moving statistics, seed-generator states (Dropout and
    friends), metric accumulators (compiled losses may track per-output
    losses): what the audit and the gradient monitor save before a pass and
    put back after it.
    """
    state = []
    seen = set()
    for v in list(model.non_trainable_variables) + list(model.metrics_variables):
        if id(v) not in seen:
            seen.add(id(v))
            state.append(v)
    return state
