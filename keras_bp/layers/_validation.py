"""Argument checks shared by the layers: errors that name the argument and the value."""

import numbers


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, received: {name}={value!r}")
    return int(value)


def check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a float in [0, 1], received: {name}={value!r}")
    return float(value)


def check_non_negative(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, received: {name}={value!r}")
    return float(value)


def check_input_rank(layer_name, arg, shape, min_rank=None, rank=None):
    """Raise a ValueError when an input's rank does not fit (shape may be None)."""
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
