"""ConversionReport: what `convert` swapped, kept and descended into, and the manual share."""

import dataclasses

import numpy as np

__all__ = ["ConversionReport", "count_manual_parameters"]


@dataclasses.dataclass
class ConversionReport:
    """What `convert` did, layer by layer, and how much of the model it reached.

    Layer names are paths: a layer inside a nested model, a wrapper or a
    custom layer is named `outer/inner` (the custom layer's attribute holding
    it is not part of the path, its layer name is).

    Attributes:
        swapped: `(name, class name)` of each layer now a keras_bp layer.
        kept: `(name, class name, reason)` of each layer left as Keras's or
            your own class.
        descended: `(name, class name, how)` of each nested model, wrapper
            and custom layer whose sublayers were converted.
        manual_parameters: trainable parameters behind hand-derived backward
            passes in the converted model (see `count_manual_parameters`).
        trainable_parameters: all trainable parameters of the converted model.
    """

    swapped: list = dataclasses.field(default_factory=list)
    kept: list = dataclasses.field(default_factory=list)
    descended: list = dataclasses.field(default_factory=list)
    manual_parameters: int = 0
    trainable_parameters: int = 0

    @property
    def manual_parameter_share(self):
        """`manual_parameters / trainable_parameters`, 0.0 for a model with none."""
        if self.trainable_parameters == 0:
            return 0.0
        return self.manual_parameters / self.trainable_parameters

    def __str__(self):
        lines = [f"keras_bp.convert: swapped {len(self.swapped)} layer(s), kept {len(self.kept)}"]
        lines += [f"  swapped  {name} ({cls})" for name, cls in self.swapped]
        lines += [f"  kept     {name} ({cls}): {why}" for name, cls, why in self.kept]
        lines += [f"  into     {name} ({cls}): {how}" for name, cls, how in self.descended]
        lines.append(
            f"  manual backward passes: {self.manual_parameters:,} of {self.trainable_parameters:,} "
            f"trainable parameters ({self.manual_parameter_share:.1%})"
        )
        return "\n".join(lines)


def count_manual_parameters(model):
    """`(manual, trainable)`: trainable parameters of `model`, and those behind manual passes.

    Each trainable variable is counted once (a shared layer's weights once),
    by its number of elements. It is manual when the innermost layer owning
    it (the layer whose own weights include it, not a container above it)
    is a class defined in keras_bp; a variable a custom layer creates itself
    (`add_weight` in its `build`) is its own, so not manual, even when its
    sublayers are keras_bp layers.
    """
    manual = trainable = 0
    seen = set()
    # NOTE: Keras keeps a layer's own variables in `_trainable_variables` and
    # its sublayers in `_layers`; `_flatten_layers` walks them (Keras 3).
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if not layer.trainable:
            continue
        ours = type(layer).__module__.startswith("keras_bp.")
        for variable in layer._trainable_variables:
            if id(variable) in seen or not variable.trainable:
                continue
            seen.add(id(variable))
            size = int(np.prod(variable.shape))
            trainable += size
            manual += size if ours else 0
    return manual, trainable
