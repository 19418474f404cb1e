"""Locating the culprit: the layer whose backward pass a mismatch points at.

Variables are grouped by the layer that owns them, and the layers ordered
going backward from the loss (the last layer first). A wrong backward
corrupts its own weights' gradients and, through its input gradient, every
layer before it, so the first disagreeing layer on that path is the likely
culprit (or, if its own backward is right, the input gradient of the next
layers with weights that read its output, found through the functional
graph).
"""

from typing import List, NamedTuple, Optional

import keras

from keras_bp.audit import _keras
from keras_bp.audit.records import variable_path

__all__ = ["Culprit", "ModelLayers"]


class Culprit(NamedTuple):
    """Where a mismatch points."""

    layer: Optional[str]  # the first disagreeing layer, going back from the loss
    next_layers: List[str]  # the first layers with weights its outputs reach (their input gradients are the other suspects)
    earlier_layers_agree: bool  # layers with weights before it exist and all agree


class ModelLayers:
    """A model's layers as the culprit search sees them: owners, order, graph.

    Args:
        model: the audited model.
        variables: its trainable variables, in audit order.
    """

    def __init__(self, model, variables):
        self.owners, self.order = _layer_order(model, variables)
        self._by_name = {layer.name: layer for layer in _keras.layers(model)}

    def culprit(self, variables):
        """The `Culprit` of a list of `VariableAudit`s (layer None where all pass)."""
        failing_layers = {v.layer for v in variables if not v.passed}
        if not failing_layers:
            return Culprit(None, [], False)
        # Going backward from the loss: the last layer first.
        backward = list(reversed(self.order))
        for i, layer in enumerate(backward):
            if layer in failing_layers:
                before = {v.layer for v in variables} & set(backward[i + 1:])
                return Culprit(
                    layer,
                    self._next_with_weights(layer, backward[:i]),
                    bool(before) and not (before & failing_layers),
                )
        return Culprit(None, [], False)

    def _next_with_weights(self, name, later):
        """The first layers with trainable variables that the culprit's outputs reach.

        In a functional graph the culprit's consumers are followed through
        layers without weights (activations, merges, padding), so a branching
        model (ResNet's shortcuts) names the layer that really reads its
        output, not the next one in the flattened order. Without a graph
        (subclassed models), the next layer with weights in that order.
        """
        with_weights = set(self.owners)
        by_name = self._by_name
        start = by_name.get(name)
        reached = []
        frontier = [start] if start is not None else []
        seen = set()
        while frontier:
            layer = frontier.pop()
            for consumer in _keras.consumers(layer):
                if id(consumer) in seen or consumer.name not in by_name:
                    continue
                seen.add(id(consumer))
                if consumer.name in with_weights:
                    reached.append(consumer.name)
                else:
                    frontier.append(consumer)
        if reached:
            # A layer whose output feeds several (ResNet's shortcut and
            # branch): each one's input gradient is a suspect.
            return sorted(set(reached), key=self.order.index)
        for candidate in reversed(later):
            if candidate in with_weights:
                return [candidate]
        return []


def _layer_order(model, variables):
    """The owning layer's name for each variable, and the layers in forward order.

    Layers come in Keras's flattened order: the topological order for
    Sequential and functional models, the order of attribute assignment for
    subclassed ones (which is the call order in the usual style).
    """
    owner = {}
    order = []
    for layer in _keras.layers(model):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if _keras.has_sublayers(layer):
            # A container (nested model or block): its leaves are listed too.
            if not _keras.own_trainable_variables(layer):
                continue
        order.append(layer.name)
        for v in _keras.own_trainable_variables(layer):
            owner.setdefault(id(v), layer.name)
    names = []
    for v in variables:
        name = owner.get(id(v))
        if name is None:
            name = variable_path(model, v).rsplit("/", 1)[0]
            if name not in order:
                order.append(name)
        names.append(name)
    return names, order
