"""The kernel-and-bias weights that Dense and the convolutions create alike."""


def add_kernel_and_bias(layer, kernel_shape, bias_shape):
    """Adds `layer.kernel` and (when `layer.use_bias`) `layer.bias`, else sets bias to None.

    Same names, order, initializers, regularizers and constraints as Keras's
    Dense and Conv layers, so weights transfer both ways.
    """
    layer.kernel = layer.add_weight(
        name="kernel",
        shape=kernel_shape,
        initializer=layer.kernel_initializer,
        regularizer=layer.kernel_regularizer,
        constraint=layer.kernel_constraint,
    )
    layer.bias = None
    if layer.use_bias:
        layer.bias = layer.add_weight(
            name="bias",
            shape=bias_shape,
            initializer=layer.bias_initializer,
            regularizer=layer.bias_regularizer,
            constraint=layer.bias_constraint,
        )
