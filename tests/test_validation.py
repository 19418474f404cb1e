"""The shared argument checks: one contract per check, one message form."""

import numpy as np
import pytest
import tensorflow as tf

from keras_bp import _validation as v


@pytest.mark.parametrize(
    "check, args, message",
    [
        (v.check_positive_int, ("units", 0), "units must be a positive integer, received: units=0"),
        (v.check_positive_int, ("units", True), "received: units=True"),
        (v.check_int, ("axis", 1.0), "axis must be an integer, received: axis=1.0"),
        (v.check_non_negative, ("epsilon", -1.0), "epsilon must be a number >= 0, received: epsilon=-1.0"),
        (v.check_non_negative, ("epsilon", float("nan")), "received: epsilon=nan"),
        (v.check_non_negative, ("epsilon", tf.constant(1.0)), "epsilon must be a number >= 0"),
        (v.check_unit_interval, ("rate", 1.5), r"rate must be a float in \[0, 1\], received: rate=1.5"),
        (v.check_non_negative_int, ("directions", -1), "directions must be a non-negative integer, received: directions=-1"),
        (v.check_non_negative_int, ("directions", 1.0), "received: directions=1.0"),
        (v.check_one_of, ("mode", "b", ("a",)), r"mode must be one of \('a',\), received: mode='b'"),
    ],
)
def test_each_check_names_the_argument_and_the_value(check, args, message):
    with pytest.raises(ValueError, match=message):
        check(*args)


def test_checks_return_the_standard_form():
    assert v.check_positive_int("units", np.int64(3)) == 3 and type(v.check_positive_int("units", 3)) is int
    assert v.check_non_negative("max_value", None, allow_none=True) is None
    assert v.check_unit_interval("rho", 0) == 0.0
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        v.check_unit_interval("rho", 1.0, include_one=False)


def test_if_number_checks_numbers_and_passes_tensors_and_callables():
    with pytest.raises(ValueError, match="learning_rate=-0.1"):
        v.if_number(v.check_non_negative, "learning_rate", -0.1)
    for deferred in (tf.constant(-1.0), lambda: -1.0):
        assert v.if_number(v.check_non_negative, "learning_rate", deferred) is deferred
