"""convert(model): swap each Keras layer that has a keras_bp counterpart for it."""

import dataclasses

import keras

__all__ = ["convert", "ConversionReport"]


@dataclasses.dataclass
class ConversionReport:
    """What `convert` did: (layer name, class name) swapped, and kept with the reason."""

    swapped: list = dataclasses.field(default_factory=list)
    kept: list = dataclasses.field(default_factory=list)

    def __str__(self):
        lines = [f"keras_bp.convert: swapped {len(self.swapped)} layer(s), kept {len(self.kept)}"]
        lines += [f"  swapped  {name} ({cls})" for name, cls in self.swapped]
        lines += [f"  kept     {name} ({cls}): {why}" for name, cls, why in self.kept]
        return "\n".join(lines)


def _counterparts():
    from keras_bp import layers as bp_layers

    table = {}
    for name in bp_layers.__all__:
        ours = getattr(bp_layers, name)
        theirs = getattr(keras.layers, name, None)
        if theirs is not None:
            table[theirs] = ours
    return table


def convert(model, verbose=False, return_report=False):
    """A copy of a Sequential or functional Keras model built from keras_bp layers.

    Every layer whose exact class is a `keras.layers` class with a keras_bp
    counterpart (Dense, Dropout, Conv2D, LSTM, ...) is rebuilt from its config
    as the keras_bp layer; every other layer is cloned as it is. Weights are
    copied, so the converted model gives the same predictions, and its
    gradients now flow through the hand-derived backward passes, ready for
    `GradientAudit` and `check_gradients`.

    Args:
        model: a built Sequential or functional `keras.Model`.
        verbose: print the report.
        return_report: return `(converted_model, ConversionReport)`.

    Returns:
        The converted model (and the report, with `return_report=True`).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"convert expects a keras.Model, received: {type(model).__name__}")
    if not model.built:
        raise ValueError("convert needs a built model (call it once, or give it an Input), received an unbuilt model")
    table = _counterparts()
    report = ConversionReport()

    def clone_layer(layer):
        try:
            config = layer.get_config()
        except Exception as error:  # a lambda activation, say: Keras can't clone it either
            report.kept.append((layer.name, type(layer).__name__, f"shared, not cloned (no config: {error})"))
            return layer
        ours = table.get(type(layer))
        if ours is None:
            report.kept.append((layer.name, type(layer).__name__, "no keras_bp counterpart"))
            return layer.__class__.from_config(config)
        try:
            new = ours.from_config(config)
        except (ValueError, TypeError) as error:
            # Keras's from_config wraps the layer's own message: report that one.
            cause = error.__cause__ or error.__context__ or error
            report.kept.append((layer.name, type(layer).__name__, str(cause).split("\n")[0]))
            return layer.__class__.from_config(config)
        report.swapped.append((layer.name, type(layer).__name__))
        return new

    try:
        converted = keras.models.clone_model(model, clone_function=clone_layer)
    except ValueError as error:
        raise ValueError(
            "convert supports Sequential and functional models; for a subclassed "
            f"model, build it from keras_bp layers directly. Cloning failed: {error}"
        ) from error
    converted.set_weights(model.get_weights())
    if verbose:
        print(report)
    return (converted, report) if return_report else converted
