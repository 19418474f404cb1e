"""The private Keras calls the audit needs, each in one place with the reason.

Keras 3.15 has no public way to do any of these (the gradient monitor,
keras_bp.health, uses them too); when Keras changes one, this
module is the only one to change.
"""

import keras

__all__ = [
    "compiled_loss",
    "consumers",
    "float64_policy",
    "has_sublayers",
    "layers",
    "loss_objects",
    "own_trainable_variables",
    "set_dtype_policy",
    "set_loss_dtype",
    "symbolic_build",
    "training_loss",
    "training_outputs",
]


def layers(model, include_self=False):
    """Every layer inside `model`, nested ones too, in Keras's order.

    Why: `model.layers` lists the top level only; the audit needs the leaves
    of nested models and blocks (topological order for functional models,
    attribute order for subclassed ones).
    """
    return list(model._flatten_layers(include_self=include_self, recursive=True))


def has_sublayers(layer):
    """Whether `layer` contains layers (a nested model or block).

    Why: a container's leaves are listed by `layers` too; only its own
    variables, if any, make it a layer of its own.
    """
    return bool(list(layer._flatten_layers(include_self=False, recursive=False)))


def own_trainable_variables(layer):
    """The trainable variables `layer` itself created.

    Why: `layer.trainable_variables` includes its sublayers'.
    """
    return getattr(layer, "_trainable_variables", [])


def consumers(layer):
    """The operations that read `layer`'s outputs in a functional graph.

    Why: Keras keeps a layer's successors in its outbound nodes only; the
    culprit search follows them through layers without weights.
    """
    return [node.operation for node in getattr(layer, "_outbound_nodes", None) or []]


def symbolic_build(model, spec):
    """Builds an unbuilt (subclassed) model from the audit batch's specs.

    Why: without a distribution strategy Keras builds such a model only when
    it traces the train step, after `on_train_begin`; `_symbolic_build` is
    how Keras builds it under a strategy, with no forward pass and no state
    touched.
    """
    model._symbolic_build(data_batch=spec)


def training_outputs(model, x):
    """`model(x)` as `fit` calls it: `training=True` where `call` takes it.

    Why: `_call_has_training_arg` is how Keras's trainer decides.
    """
    if model._call_has_training_arg:
        return model(x, training=True)
    return model(x)


def training_loss(model, x, y, y_pred, sample_weight):
    """The model's own training loss, regularization and `add_loss` losses included.

    Why: `_compute_loss` is what `train_step` calls; it passes `training`
    only to a `compute_loss` override that takes it (added in Keras 3.3).
    """
    return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)


def compiled_loss(model):
    """The model's compiled loss (None before compile).

    Why: a recompile replaces it, and the audit's trace captures it.
    """
    return getattr(model, "_compile_loss", None)


def loss_objects(model):
    """The compiled loss and the `keras.losses.Loss` objects inside it (none before compile).

    Why: Keras keeps a compiled loss's losses in `_flat_losses`; the float64
    check sets each one's dtype.
    """
    compiled = compiled_loss(model)
    if compiled is None:
        return []
    found = [compiled]
    for entry in getattr(compiled, "_flat_losses", None) or []:
        if isinstance(getattr(entry, "loss", None), keras.losses.Loss):
            found.append(entry.loss)
    return found


def set_loss_dtype(loss, dtype):
    """Sets the dtype `Loss.__call__` converts y_true and y_pred to (`loss.dtype`).

    Why: `Loss` derives it once, in `__init__`, and has no setter.
    """
    loss._dtype = dtype


def set_dtype_policy(layer, policy):
    """Replaces a layer's dtype policy, as it is, with `policy`.

    Why: the `dtype_policy` setter writes into a `DTypePolicyMap` in place of
    replacing it (and quantizes for a quantized policy); the float64 check
    swaps each layer's policy out and back, leaving it as it was.
    """
    layer._dtype_policy = policy


class _Float64Compute(keras.dtype_policies.DTypePolicy):
    """Computes in float64; variables stay in `variable_dtype`."""

    def __init__(self, variable_dtype):
        self._target_variable_dtype = variable_dtype
        super().__init__("float64")

    def _parse_name(self, name):
        return "float64", self._target_variable_dtype


def float64_policy(variable_dtype):
    """A dtype policy that computes in float64 and keeps variables in `variable_dtype`.

    Why: a `DTypePolicy` parses one name into both dtypes, and only the
    mixed names ("mixed_float16") tell them apart; overriding `_parse_name`
    is the way to any other pair.
    """
    return _Float64Compute(variable_dtype)
