"""Planting a known gradient bug in a layer, to see that an audit catches it.

`plant_gradient_bug(layer, position, factor)` wraps one of a keras_bp
layer's manual-gradient ops so that the gradient of its input at `position`
comes back multiplied by `factor`: `position=1, factor=1.01` makes a
Conv2D's kernel gradient 1% too large, `position=0, factor=0.99` its input
gradient 1% too small. The forward is unchanged, and so is autodiff of it
(`keras_bp.autodiff()`), so the bug is exactly a wrong backward:

    forward:   y = x                       (the planted input, unchanged)
    backward:  dL/dx = factor * dL/dy      (the bug)

Call it on a built layer before the model is traced (before `fit` or the
first audit). A GradientAudit of the model should then name the layer: as
the culprit for a weight gradient (position >= 1), as `culprit_next`, the
other suspect, for an input gradient (position 0).
"""

from keras_bp.core import manual_gradient

__all__ = ["plant_gradient_bug"]


def _scaled_gradient(factor):
    def forward(x):
        return x, None

    def backward(_, dy):
        return factor * dy

    return manual_gradient(forward, backward, name=f"planted_gradient_x{factor:g}")


def plant_gradient_bug(layer, position=1, factor=1.01, op="_op"):
    """Makes `layer`'s manual gradient of its op's input `position` `factor` times too large.

    Args:
        layer: a built keras_bp layer (its op attribute holds a manual-gradient op).
        position: which positional input of the op: 0 the layer's input,
            1 the kernel (Dense, Conv) or gamma (normalization), 2 the bias or beta.
        factor: the planted scaling of that gradient.
        op: the attribute holding the op: "_op" (Dense, Conv, LayerNormalization),
            "_train_op" (BatchNormalization in training).
    """
    original = getattr(layer, op, None)
    if not callable(original):
        raise ValueError(
            f"plant_gradient_bug: layer '{layer.name}' ({type(layer).__name__}) has no op "
            f"'{op}' (build it first, or name the op), received: op={op!r}"
        )
    scale = _scaled_gradient(factor)

    def planted(*inputs):
        inputs = list(inputs)
        inputs[position] = scale(inputs[position])
        return original(*inputs)

    setattr(layer, op, planted)
