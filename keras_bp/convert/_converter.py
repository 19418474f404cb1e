"""convert(model): a copy of a Keras model with keras_bp layers wherever it has Keras's, at any depth."""

import functools

import keras
from keras.src.models.functional import Functional  # no public name; keras.Model(inputs, outputs) is one

from keras_bp.convert._report import ConversionReport, count_manual_parameters

__all__ = ["convert"]


def _counterparts():
    from keras_bp import layers as bp_layers

    table = {}
    for name in bp_layers.__all__:
        ours = getattr(bp_layers, name)
        theirs = getattr(keras.layers, name, None)
        if theirs is not None:
            table[theirs] = ours
    return table


def _first_line(error):
    # Keras's from_config wraps the layer's own message: report that one.
    cause = error.__cause__ or error.__context__ or error
    return str(cause).strip().split("\n")[0]


def _is_keras_class(layer):
    return type(layer).__module__.startswith("keras.")


def _is_ours(layer):
    return type(layer).__module__.startswith("keras_bp.")


def _wrapped(layer):
    """`{config key: inner layer}` of one of Keras's wrappers, `{}` for any other layer."""
    if isinstance(layer, keras.layers.Bidirectional):
        return {"layer": layer.forward_layer, "backward_layer": layer.backward_layer}
    if isinstance(layer, keras.layers.Wrapper) and _is_keras_class(layer):
        return {"layer": layer.layer}
    return {}


@functools.cache
def _base_attributes():
    """Keras's own bookkeeping attributes: those of a bare layer, and its list of sublayers."""
    return frozenset(vars(keras.layers.Layer())) | {"_layers"}


def _sublayer_slots(layer):
    """`(attribute, index, sublayer)` for each layer a custom layer holds, directly or in a list, tuple or dict.

    `index` is None for a layer held directly. Keras's own bookkeeping
    attributes (those of a bare `keras.layers.Layer`, such as `_layers`)
    are skipped.
    """
    slots = []
    for attribute, value in vars(layer).items():
        if attribute in _base_attributes():
            continue
        if isinstance(value, keras.layers.Layer):
            slots.append((attribute, None, value))
        elif isinstance(value, (list, tuple)):
            slots += [(attribute, i, v) for i, v in enumerate(value) if isinstance(v, keras.layers.Layer)]
        elif isinstance(value, dict):
            slots += [(attribute, k, v) for k, v in value.items() if isinstance(v, keras.layers.Layer)]
    return slots


def _slot(holder, attribute, index):
    value = getattr(holder, attribute, None)
    if index is None:
        return value
    try:
        return value[index]
    except (TypeError, IndexError, KeyError):
        return None


def _put(holder, attribute, index, old, new):
    """Put `new` where `old` is in `holder`, keeping its place in Keras's list of sublayers (weight order)."""
    tracker = getattr(holder, "_tracker", None)
    if tracker is not None and tracker.is_in_store("layers", old) and not tracker.is_in_store("layers", new):
        tracker.replace_tracked_value("layers", old, new)
    elif tracker is not None and tracker.is_in_store("layers", old):
        tracker.untrack(old)  # `new` already held elsewhere in `holder`: a shared sublayer
    if index is None:
        setattr(holder, attribute, new)
        return
    value = getattr(holder, attribute)
    if isinstance(value, tuple):
        setattr(holder, attribute, tuple(new if i == index else v for i, v in enumerate(value)))
    else:
        value[index] = new  # NOTE: a TrackedList or TrackedDict item: plain assignment, no tracking


def _copy_weights(source, target, skip_source=(), skip_target=()):
    """Copy `source`'s weights into `target`, leaving out those of the sublayers in `skip_*` (copied on their own)."""
    if not target.built and source.built:
        target.build_from_config(source.get_build_config())

    def own(layer, skip):
        skipped = {id(w) for sub in skip for w in sub.weights}
        return [w for w in layer.weights if id(w) not in skipped]

    theirs, ours = own(source, skip_source), own(target, skip_target)
    if [tuple(w.shape) for w in theirs] != [tuple(w.shape) for w in ours]:
        raise ValueError(
            f"convert could not copy the weights of layer '{source.name}' ({type(source).__name__}): "
            f"its copy has weights {[tuple(w.shape) for w in ours]}, the original "
            f"{[tuple(w.shape) for w in theirs]}"
        )
    for a, b in zip(theirs, ours):
        b.assign(a)


class _Converter:
    """One conversion: the clone function `keras.models.clone_model` calls, and what it did."""

    def __init__(self):
        self.table = _counterparts()
        self.report = ConversionReport()
        self.done = {}  # id(original layer) -> its conversion: a shared layer stays shared
        self.copies = []  # (source, target, source sublayers, target sublayers) once all is built
        self.path = []  # names of the enclosing layers

    def __call__(self, layer):
        if id(layer) not in self.done:
            self.done[id(layer)] = self._convert(layer)
        return self.done[id(layer)]

    def _name(self, layer):
        return "/".join(self.path + [layer.name])

    def _keep(self, layer, why):
        self.report.kept.append((self._name(layer), type(layer).__name__, why))

    def _convert(self, layer):
        if isinstance(layer, (keras.Sequential, Functional)):
            return self._model(layer)
        try:
            config = layer.get_config()
        except Exception as error:  # a lambda activation, say: Keras can't clone it either
            if not (_is_keras_class(layer) or _is_ours(layer)):
                return self._custom(layer)
            self._keep(layer, f"shared, not cloned (no config: {_first_line(error)})")
            return layer
        if type(layer) in self.table:
            return self._leaf(layer, config)
        if _wrapped(layer):
            return self._wrapper(layer, config)
        if not isinstance(layer, keras.layers.Layer):
            # `a + b` or `keras.ops.add(a, b)` on symbolic tensors puts an operation in the graph.
            self._keep(layer, "a keras.ops operation in the graph, not a layer (no weights; autodiff's gradient)")
            return self._clone(layer, config)
        if _is_keras_class(layer) or _is_ours(layer):
            self._keep(layer, "already a keras_bp layer" if _is_ours(layer) else "no keras_bp counterpart")
            return self._clone(layer, config)
        return self._custom(layer)

    def _clone(self, layer, config):
        clone = layer.__class__.from_config(config)
        if isinstance(layer, keras.layers.Layer):  # not an op such as keras.ops.add in a functional graph
            self.copies.append((layer, clone, (), ()))
        return clone

    def _swap(self, layer, config):
        """The keras_bp layer for a Keras layer that has a counterpart, or None (reason in the report)."""
        try:
            ours = self.table[type(layer)].from_config(config)
        except (ValueError, TypeError) as error:
            self._keep(layer, _first_line(error))
            return None
        self.report.swapped.append((self._name(layer), type(layer).__name__))
        return ours

    def _leaf(self, layer, config):
        ours = self._swap(layer, config)
        if ours is None:
            return self._clone(layer, config)
        self.copies.append((layer, ours, (), ()))
        return ours

    def _model(self, model):
        self.path.append(model.name)
        try:
            clone = keras.models.clone_model(model, clone_function=self)
        finally:
            self.path.pop()
        self.report.descended.append((self._name(model), type(model).__name__, "nested model, cloned"))
        return clone

    def _wrapper(self, layer, config):
        # The wrapper rebuilds its inner layers from the config, so swapping there is enough.
        self.path.append(layer.name)
        try:
            for key, inner in _wrapped(layer).items():
                ours = self._swap(inner, inner.get_config()) if type(inner) in self.table else None
                if ours is not None:
                    config[key] = keras.saving.serialize_keras_object(ours)
                elif type(inner) not in self.table:
                    self._keep(inner, "no keras_bp counterpart")
        finally:
            self.path.pop()
        self.report.descended.append((self._name(layer), type(layer).__name__, "wrapper, rebuilt around the swapped layer"))
        return self._clone(layer, config)

    def _rebuild(self, layer):
        """A fresh copy of a custom layer, and how it was made; `(None, reason)` when none can be made."""
        try:
            return type(layer).from_config(layer.get_config()), "rebuilt from its config"
        except Exception as error:
            why = _first_line(error)
        # NOTE: Keras records the constructor's arguments when they are all plain
        # values (its default get_config uses them): keras-io's layers that take no
        # **kwargs fail from_config (`name` or `trainable` unexpected) yet rebuild so.
        arguments = getattr(layer, "_auto_config", None)
        if arguments is not None:
            try:
                copy = type(layer)(**arguments.config)
            except Exception:
                pass
            else:
                copy.name = layer.name
                copy.trainable = layer.trainable
                return copy, f"rebuilt from its constructor arguments (its config does not rebuild it: {why})"
        return None, why

    def _custom(self, layer):
        """A user's layer holding Keras layers: a fresh copy with each sublayer converted."""
        copy, how = self._rebuild(layer)
        if copy is None:
            self._keep(
                layer,
                "shared with the original model, not copied: same object and weights, "
                f"sublayers left as they are (it cannot be rebuilt: {how})",
            )
            return layer
        slots = _sublayer_slots(layer)
        if not slots:
            self._keep(layer, f"no keras_bp counterpart (your own class, {how})")
            self.copies.append((layer, copy, (), ()))
            return copy
        sources, targets = [], []
        self.path.append(layer.name)
        try:
            for attribute, index, sub in slots:
                old = _slot(copy, attribute, index)
                if not isinstance(old, keras.layers.Layer):
                    continue  # made in `build`, not `__init__`: the copy makes its own, weights copied with the layer's
                new = self(sub)
                _put(copy, attribute, index, old, new)
                sources.append(sub)
                targets.append(new)
        finally:
            self.path.pop()
        self.report.descended.append((self._name(layer), type(layer).__name__, how))
        self.copies.append((layer, copy, sources, targets))
        return copy


def convert(model, verbose=False, return_report=False):
    """A copy of a Sequential or functional Keras model built from keras_bp layers, at any depth.

    Every layer whose exact class is a `keras.layers` class with a keras_bp
    counterpart (Dense, Dropout, Conv2D, LSTM, ...) is rebuilt from its config
    as the keras_bp layer, wherever it sits:

    - in a nested Sequential or functional model (cloned in turn);
    - inside Keras's wrappers (`Bidirectional`, `TimeDistributed`): the
      wrapper is rebuilt around the keras_bp layer;
    - inside your own layer classes, held as attributes or in lists, tuples
      or dicts (keras-io's `TransformerBlock`, `TokenAndPositionEmbedding`):
      the layer is rebuilt from its config, or, when its config does not
      rebuild it, from the constructor arguments Keras recorded (plain
      values only), and each sublayer in the copy is replaced by its
      conversion (sublayers made in `build` stay the copy's own, weights
      copied).

    Keras's other layers (Lambda, RMSNormalization, ...) are cloned as they
    are, without descending into them. A layer used twice stays one layer
    used twice. Weights are copied, so the converted model gives the same
    predictions and gradients, now through the hand-derived backward passes,
    ready for `GradientAudit` and `check_gradients`.

    The original model is left untouched, with one exception: a custom layer
    that can be rebuilt neither from its config nor from its constructor
    arguments (it takes a layer or a function, say, and has no working
    `get_config`) is kept shared: the converted model holds that very layer
    object, with its Keras sublayers and the same weight variables, so
    training either model changes both. The report says so beside it.

    A `.keras` file of the converted model loads with keras_bp layers, except
    inside your own layer classes: those rebuild themselves from their config
    on loading, with the Keras layers their constructor makes (same weights);
    `convert` the loaded model again to swap them.

    The report's `manual_parameter_share` is the share of the converted
    model's trainable parameters (each variable once, by element count) whose
    innermost owning layer is a keras_bp class (see
    `keras_bp.convert._report.count_manual_parameters`).

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
    converter = _Converter()
    try:
        converted = keras.models.clone_model(model, clone_function=converter)
    except ValueError as error:
        raise ValueError(
            "convert supports Sequential and functional models; for a subclassed "
            f"model, build it from keras_bp layers directly. Cloning failed: {error}"
        ) from error
    for source, target, source_subs, target_subs in converter.copies:
        _copy_weights(source, target, source_subs, target_subs)
    report = converter.report
    report.manual_parameters, report.trainable_parameters = count_manual_parameters(converted)
    if verbose:
        print(report)
    return (converted, report) if return_report else converted
