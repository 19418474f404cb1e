"""The kernel-and-bias weights that Dense and the convolutions create alike."""


def add_kernel_and_bias(layer, kernel_shape, bias_shape):
    """Adds `layer.kernel` and (when `layer.use_bias`) `layer.bias`, else sets bias to None.

    Same names, order, initializers, regularizers and constraints as Keras's
    Dense and Conv layers, so weights transfer both ways.
    """
    layer.kernel = _add(layer, "kernel", kernel_shape)
    layer.bias = _add(layer, "bias", bias_shape) if layer.use_bias else None


def _add(layer, name, shape):
    """The weight `name`, with the layer's `<name>_initializer`, `_regularizer` and `_constraint`."""
    return layer.add_weight(
        name=name,
        shape=shape,
        initializer=getattr(layer, f"{name}_initializer"),
        regularizer=getattr(layer, f"{name}_regularizer"),
        constraint=getattr(layer, f"{name}_constraint"),
    )
