"""Weight options: the initializer, regularizer and constraint of each weight, from `__init__` to `get_config`."""

import keras

# Each kind of option: its name, how Keras reads it and how Keras serializes it.
_KINDS = (
    ("initializer", keras.initializers.get, keras.initializers.serialize),
    ("regularizer", keras.regularizers.get, keras.regularizers.serialize),
    ("constraint", keras.constraints.get, keras.constraints.serialize),
)


def set_weight_options(layer, **options):
    """Sets `layer.<prefix>_initializer`, `_regularizer` and `_constraint`.

    Each keyword is `prefix=(initializer, regularizer, constraint)`, the
    values as the user passed them (identifiers, dicts or objects); each is
    turned into its Keras object as Keras's layers do. A shorter tuple sets
    the first kinds only (a moving statistic has an initializer alone).
    """
    for prefix, values in options.items():
        for (kind, get, _), value in zip(_KINDS, values):
            setattr(layer, f"{prefix}_{kind}", get(value))


def add_weight_with_options(layer, name, shape, prefix=None, **kwargs):
    """`layer.add_weight` of the weight `name` with the layer's options for `prefix` (default `name`).

    The options are `layer.<prefix>_initializer`, `_regularizer` and
    `_constraint`; one the layer does not keep is left to Keras's default.
    `kwargs` (an `initializer` among them) go to `add_weight` as given.
    """
    prefix = prefix or name
    for kind, _, _ in _KINDS:
        kwargs.setdefault(kind, getattr(layer, f"{prefix}_{kind}", None))
    return layer.add_weight(name=name, shape=shape, **kwargs)


def weight_options_config(layer, *prefixes, activity_regularizer=False):
    """The options of `prefixes` for `get_config`, serialized, in Keras's order.

    Keras lists the initializers of all weights, then the regularizers (then,
    in the recurrent layers and Embedding, the `activity_regularizer`: pass
    `activity_regularizer=True`), then the constraints; a prefix without
    some kind (a moving statistic's regularizer) is skipped there.
    """
    config = {}
    for kind, _, serialize in _KINDS:
        for prefix in prefixes:
            key = f"{prefix}_{kind}"
            if hasattr(layer, key):
                config[key] = serialize(getattr(layer, key))
        if kind == "regularizer" and activity_regularizer:
            config["activity_regularizer"] = serialize(layer.activity_regularizer)
    return config
