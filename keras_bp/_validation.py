"""Argument checks for every keras_bp class: one contract per check, one message form.

Each error is a ValueError that names the argument, what it accepts and the
value received:

    units must be a positive integer, received: units=0

A class whose Keras counterpart words the error differently passes Keras's
words as `lead`, put before ours, so that a test written against Keras's
message (`assertRaisesRegex`) matches keras_bp's too:

    The negative_slope value of a Leaky ReLU layer cannot be None or negative
    value. negative_slope must be a number >= 0, received: negative_slope=None

Each check accepts Python and NumPy numbers (never bools) and returns the
value in its standard form (an int, a float). Optimizers also take tensors,
schedules and callables for their hyperparameters, whose values are only
known when the update runs; `if_number` applies a check to numbers alone.
"""

import numbers


def invalid(name, value, accepted, lead=None):
    """The ValueError of every check: `<lead> <name> must be <accepted>, received: <name>=<value>`."""
    message = f"{name} must be {accepted}, received: {name}={value!r}"
    return ValueError(message if lead is None else f"{lead} {message}")


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name, value, lead=None):
    """`value` as an int; raises unless it is an integer > 0."""
    if not _is_integer(value) or value <= 0:
        raise invalid(name, value, "a positive integer", lead)
    return int(value)


def check_non_negative_int(name, value):
    """`value` as an int; raises unless it is an integer >= 0."""
    if not _is_integer(value) or value < 0:
        raise invalid(name, value, "a non-negative integer")
    return int(value)


def check_one_of(name, value, choices):
    """`value` itself; raises unless it is one of `choices`."""
    if value not in choices:
        raise invalid(name, value, f"one of {tuple(choices)}")
    return value


def check_int(name, value, allow_none=False):
    """`value` as an int (or None where allowed); raises unless it is an integer."""
    if value is None and allow_none:
        return None
    if not _is_integer(value):
        raise invalid(name, value, "an integer or None" if allow_none else "an integer")
    return int(value)


def check_non_negative(name, value, allow_none=False, lead=None):
    """`value` as a float (or None where allowed); raises unless it is a number >= 0 (NaN is not)."""
    if value is None and allow_none:
        return None
    if not _is_number(value) or not value >= 0:
        raise invalid(name, value, "None or a number >= 0" if allow_none else "a number >= 0", lead)
    return float(value)


def check_unit_interval(name, value, include_one=True, lead=None):
    """`value` as a float; raises unless it is a number in [0, 1] (or [0, 1) without `include_one`)."""
    interval = "[0, 1]" if include_one else "[0, 1)"
    if not _is_number(value) or not (0 <= value <= 1 if include_one else 0 <= value < 1):
        raise invalid(name, value, f"a float in {interval}", lead)
    return float(value)


def if_number(check, name, value, **options):
    """`check(name, value, **options)` for a number; anything else (a tensor, a
    schedule, a callable: known only when used) passes unchecked, as it is."""
    if isinstance(value, numbers.Real):
        check(name, value, **options)
    return value


def check_input_rank(layer_name, arg, shape, min_rank=None, rank=None):
    """Raises a ValueError when an input's rank does not fit (shape may be None)."""
    if shape is None:
        return
    got = len(shape)
    if rank is not None and got != rank:
        raise ValueError(
            f"{layer_name} expects {arg} of rank {rank}, received: "
            f"{arg} with shape {tuple(shape)} (rank {got})"
        )
    if min_rank is not None and got < min_rank:
        raise ValueError(
            f"{layer_name} expects {arg} of rank >= {min_rank}, received: "
            f"{arg} with shape {tuple(shape)} (rank {got})"
        )


# What each Keras-only layer option is for, as the error names it.
_KERAS_ONLY_FEATURES = {"lora_rank": "LoRA", "lora_alpha": "LoRA", "quantization_config": "quantization",
                        "gptq_unpacked_column_size": "quantization"}


def reject_keras_only_options(layer, kwargs, names):
    """Pops the Keras options `names` (LoRA, quantization) from `kwargs`; raises if one is set.

    keras_bp's layers take them so that a Keras config loads, and say which
    Keras layer to use instead.
    """
    cls = type(layer).__name__
    features = " or ".join(dict.fromkeys(_KERAS_ONLY_FEATURES[name] for name in names))
    for name in names:
        value = kwargs.pop(name, None)
        if value is not None:
            raise ValueError(
                f"keras_bp.layers.{cls} does not support {name}, received: {name}={value!r}; "
                f"use keras.layers.{cls} for {features}."
            )


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type where Keras raises TypeError (LayerNormalization's `axis`).

    NOTE: a ValueError too, the error of every other check here, so code that
    catches ValueError for a bad argument keeps working (NumPy's AxisError is
    both a ValueError and an IndexError for the same reason).
    """
