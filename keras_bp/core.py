"""The manual-gradient core: a forward/backward pair becomes a TensorFlow op.

Every differentiable piece of keras_bp is two plain functions on tensors:

    forward(*inputs)            -> (outputs, saved)
    backward(saved, *upstream)  -> (grad_input_0, grad_input_1, ...)

`forward` computes the outputs and returns, in `saved`, exactly what the
backward pass needs. `backward` receives that and one upstream gradient per
output (dL/doutput) and returns one gradient per input (dL/dinput), in input
order, each with the input's shape, or `None` for an input that is not
differentiable (integer indices).

Optional inputs are `None`: an op called with `None` in an input position
(no bias, no mask) passes `None` to `forward` and `backward` in that
position, keeps it away from `tf.custom_gradient` (which takes tensors only),
and gives it a `None` gradient. The backward still returns one entry per
input, `None` for the absent ones, so no op packs optional tensors by hand.

`manual_gradient(forward, backward)` wires such a pair into TensorFlow with
`tf.custom_gradient`. Inside `with autodiff():` the same op runs `forward`
alone, so `tf.GradientTape` differentiates the forward math itself: the
reference every check compares against. The switch is read when the op is
called, which for a `tf.function` is when it is traced: a function traced
inside `autodiff()` keeps using autodiff, one traced outside keeps using the
manual backward.

NOTE: nested custom gradients do not give second derivatives
(tensorflow#34503): differentiating the backward of a manual op again is not
supported, and a `GradientTape` over a gradient computed with manual ops gives
wrong (first-order only) results. Use `autodiff()` for higher derivatives.
"""

import contextlib
import functools
import threading

import tensorflow as tf

__all__ = ["manual_gradient", "autodiff", "autodiff_enabled"]

_state = threading.local()


def autodiff_enabled():
    """True inside `with keras_bp.autodiff():`."""
    return getattr(_state, "depth", 0) > 0


@contextlib.contextmanager
def autodiff():
    """Run manual-gradient ops as plain forward math, for TensorFlow to differentiate.

    Example:
        with keras_bp.autodiff():
            with tf.GradientTape() as tape:
                loss = model(x)
        reference = tape.gradient(loss, model.trainable_variables)
    """
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def _is_float(x):
    return x.dtype.is_floating or x.dtype.is_complex


def manual_gradient(forward, backward, name=None):
    """Turns a forward/backward pair into an op with a hand-written gradient.

    Args:
        forward: `forward(*inputs) -> (outputs, saved)`. `outputs` is a tensor
            or a tuple/list of tensors; `saved` is anything (a tensor, a tuple,
            a dict of tensors) that `backward` needs.
        backward: `backward(saved, *upstream) -> grads`: one upstream gradient
            per output, one gradient per input (a single tensor is accepted for
            a one-input op), `None` for non-differentiable inputs.
        name: name used in error messages; defaults to `forward.__name__`.

    Returns:
        A function `op(*inputs)` taking positional tensors (or `None` for an
        absent optional input) only.
    """
    op_name = name or getattr(forward, "__name__", "manual_op")

    def op(*inputs, **kwargs):
        if kwargs:
            # tensorflow#65839: keyword arguments to a custom-gradient function
            # fail in tf.function and are silently ignored eagerly.
            raise TypeError(
                f"{op_name}: manual-gradient ops take positional tensors only, "
                f"received keyword arguments {sorted(kwargs)}."
            )
        inputs = tuple(None if x is None else tf.convert_to_tensor(x) for x in inputs)
        if autodiff_enabled():
            outputs, _ = forward(*inputs)
            return outputs
        present = tuple(i for i, x in enumerate(inputs) if x is not None)
        return _custom(len(inputs), present)(*[inputs[i] for i in present])

    @functools.lru_cache(maxsize=None)
    def _custom(count, present):
        """The custom-gradient function for one pattern of present inputs."""

        def with_absent(tensors):
            # The full input list again, None where an input is absent.
            full = [None] * count
            for i, x in zip(present, tensors):
                full[i] = x
            return full

        @tf.custom_gradient
        def run(*tensors):
            inputs = with_absent(tensors)
            outputs, saved = forward(*inputs)

            flat_outputs = tf.nest.flatten(outputs)

            def grad(*upstream):
                # An output that the loss does not use may get a None upstream.
                upstream = [
                    tf.zeros_like(y) if dy is None else dy
                    for y, dy in zip(flat_outputs, upstream)
                ]
                grads = _validated(op_name, inputs, backward(saved, *upstream))
                return [grads[i] for i in present]

            return outputs, grad

        return run

    op.__name__ = op_name
    op.forward = forward
    op.backward = backward
    return op


def _validated(op_name, inputs, grads):
    """Checks count and shapes of a backward's gradients; casts each to its input's dtype."""
    if isinstance(grads, (tf.Tensor, tf.IndexedSlices)) or grads is None:
        grads = (grads,)
    grads = tuple(grads)
    if len(grads) != len(inputs):
        raise ValueError(
            f"The backward of op '{op_name}' returned {len(grads)} gradient(s) "
            f"for {len(inputs)} input(s); it must return one per input, in "
            "input order (None for a non-differentiable input)."
        )
    checked = []
    for i, (x, g) in enumerate(zip(inputs, grads)):
        if g is None or x is None:
            # No gradient, or an absent optional input (which gets none).
            checked.append(None)
            continue
        if not _is_float(x):
            # Integer inputs get no gradient; TensorFlow wants None there.
            checked.append(None)
            continue
        if isinstance(g, tf.IndexedSlices):
            if g.values.dtype != x.dtype:
                g = tf.IndexedSlices(tf.cast(g.values, x.dtype), g.indices, g.dense_shape)
            checked.append(g)
            continue
        g = tf.convert_to_tensor(g)
        if not g.shape.is_compatible_with(x.shape):
            raise ValueError(
                f"The backward of op '{op_name}' returned a gradient of shape "
                f"{g.shape} for input {i}, which has shape {x.shape}; each "
                "gradient must have its input's shape."
            )
        # keras#20931: under mixed precision each gradient must come back in
        # its input's dtype.
        if g.dtype != x.dtype:
            g = tf.cast(g, x.dtype)
        checked.append(g)
    return checked
