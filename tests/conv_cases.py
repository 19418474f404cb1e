"""Registry entries for the convolution, pooling and normalization layers.

Each `LayerCase` names a keras_bp layer, its `keras.layers` namesake built
with the same arguments, and a small input. The shared checks run every
case: parity with Keras on copied weights (outputs and all gradients),
manual against autodiff, float64 finite differences, fit with jit_compile
False and True, save and load, mixed precision.
"""

import dataclasses
from typing import Any, Callable

import keras

import keras_bp


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """One layer configuration for the shared checks.

    name:         test id.
    ours, theirs: zero-argument factories for the keras_bp layer and its
                  keras.layers namesake (same arguments).
    input_shape:  full input shape, batch included.
    call_kwargs:  keyword arguments for every call (e.g. training=True).
    reference_jit: Keras's layer only runs under XLA on CPU (grouped
                  convolutions), so call it compiled.
    reference_channels_last: `theirs` is the channels_last twin of a
                  channels_first layer: feed it the input transposed to
                  channels_last and transpose its output and input gradient
                  back. (Keras's channels_first convolution has no CPU kernel
                  outside XLA, and Keras 3.15 adds the bias along the last
                  axis when a channels_first output's last spatial size equals
                  `filters`; see test_conv.py.)
    """

    name: str
    ours: Callable[[], Any]
    theirs: Callable[[], Any]
    input_shape: tuple
    call_kwargs: dict = dataclasses.field(default_factory=dict)
    reference_jit: bool = False
    reference_channels_last: bool = False


def _pair(name, class_name, input_shape, call_kwargs=None, reference_jit=False, **kwargs):
    """A case whose two layers are `class_name(**kwargs)` from keras_bp and from Keras.

    A channels_first convolution is compared with Keras's channels_last twin.
    """
    via_last = class_name.startswith("Conv") and kwargs.get("data_format") == "channels_first"
    their_kwargs = {**kwargs, "data_format": "channels_last"} if via_last else kwargs
    return LayerCase(
        name=name,
        ours=lambda: getattr(keras_bp.layers, class_name)(**kwargs),
        theirs=lambda: getattr(keras.layers, class_name)(**their_kwargs),
        input_shape=input_shape,
        call_kwargs=call_kwargs or {},
        reference_jit=reference_jit,
        reference_channels_last=via_last,
    )


def _conv_cases():
    cases = []
    for fmt in ("channels_last", "channels_first"):
        cf = fmt == "channels_first"
        shape2d = (2, 3, 7, 6) if cf else (2, 7, 6, 3)
        shape1d = (2, 4, 9) if cf else (2, 9, 4)
        shape2d_g = (2, 4, 7, 6) if cf else (2, 7, 6, 4)
        for padding in ("valid", "same"):
            for strides in (1, 2):
                cases.append(_pair(f"conv2d_{fmt}_{padding}_s{strides}", "Conv2D", shape2d,
                                   filters=5, kernel_size=3, strides=strides, padding=padding, data_format=fmt,
                                   activation="relu"))
            cases.append(_pair(f"conv2d_{fmt}_{padding}_dilation2", "Conv2D", shape2d,
                               filters=4, kernel_size=(3, 2), dilation_rate=2, padding=padding, data_format=fmt))
            cases.append(_pair(f"conv2d_{fmt}_{padding}_groups2", "Conv2D", shape2d_g, reference_jit=True,
                               filters=6, kernel_size=3, groups=2, padding=padding, data_format=fmt,
                               activation="tanh"))
        for padding in ("valid", "same", "causal"):
            for strides in (1, 2):
                cases.append(_pair(f"conv1d_{fmt}_{padding}_s{strides}", "Conv1D", shape1d,
                                   filters=5, kernel_size=3, strides=strides, padding=padding, data_format=fmt,
                                   activation="sigmoid"))
            cases.append(_pair(f"conv1d_{fmt}_{padding}_dilation2", "Conv1D", shape1d,
                               filters=3, kernel_size=3, dilation_rate=2, padding=padding, data_format=fmt,
                               use_bias=False))
            cases.append(_pair(f"conv1d_{fmt}_{padding}_groups2", "Conv1D", shape1d, reference_jit=True,
                               filters=4, kernel_size=2, groups=2, padding=padding, data_format=fmt))
    return cases


def _pooling_cases():
    cases = []
    for fmt in ("channels_last", "channels_first"):
        cf = fmt == "channels_first"
        shape2d = (2, 3, 7, 6) if cf else (2, 7, 6, 3)
        shape1d = (2, 3, 9) if cf else (2, 9, 3)
        for mode in ("Max", "Average"):
            for padding in ("valid", "same"):
                for strides in (None, 1):
                    tag = f"{mode.lower()}_{fmt}_{padding}_s{strides or 'pool'}"
                    cases.append(_pair(f"{tag}_2d", f"{mode}Pooling2D", shape2d, pool_size=(3, 2),
                                       strides=strides, padding=padding, data_format=fmt))
                    cases.append(_pair(f"{tag}_1d", f"{mode}Pooling1D", shape1d, pool_size=2,
                                       strides=strides, padding=padding, data_format=fmt))
            for keepdims in (False, True):
                tag = f"global_{mode.lower()}_{fmt}_keepdims{int(keepdims)}"
                cases.append(_pair(f"{tag}_2d", f"Global{mode}Pooling2D", shape2d, data_format=fmt, keepdims=keepdims))
                cases.append(_pair(f"{tag}_1d", f"Global{mode}Pooling1D", shape1d, data_format=fmt, keepdims=keepdims))
    return cases


def _normalization_cases():
    cases = []
    for training in (True, False):
        mode = "train" if training else "infer"
        kw = {"training": training}
        cases += [
            _pair(f"batchnorm_{mode}_last", "BatchNormalization", (4, 5, 3), kw, momentum=0.9, epsilon=1e-3,
                  moving_mean_initializer="random_normal", moving_variance_initializer=keras.initializers.RandomUniform(0.5, 1.5),
                  gamma_initializer="random_normal", beta_initializer="random_normal"),
            _pair(f"batchnorm_{mode}_axis1", "BatchNormalization", (4, 3, 5, 2), kw, axis=1,
                  gamma_initializer="random_normal", beta_initializer="random_normal",
                  moving_mean_initializer="random_normal", moving_variance_initializer=keras.initializers.RandomUniform(0.5, 1.5)),
            _pair(f"batchnorm_{mode}_no_scale_center", "BatchNormalization", (6, 4), kw, center=False, scale=False),
        ]
    cases += [
        _pair("layernorm_last", "LayerNormalization", (3, 4, 5), gamma_initializer="random_normal",
              beta_initializer="random_normal"),
        _pair("layernorm_axes12", "LayerNormalization", (3, 4, 5, 2), axis=[1, 2],
              gamma_initializer="random_normal", beta_initializer="random_normal", epsilon=1e-5),
        _pair("layernorm_no_scale", "LayerNormalization", (3, 6), scale=False),
        _pair("layernorm_no_center", "LayerNormalization", (3, 6), center=False, axis=-1),
    ]
    return cases


CASES = _conv_cases() + _pooling_cases() + _normalization_cases()
