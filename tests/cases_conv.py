"""Harness cases for the convolution, pooling and normalization layers.

Every option that changes the math: both data formats, every padding,
strides 1 and 2, dilation 2, groups 2, BatchNormalization in training and
inference mode on several axes, LayerNormalization on one and two axes.
A channels_first convolution is compared with Keras's channels_last twin,
and Keras's grouped convolution is called under XLA (`KerasReference`).
The whole-model checks (fit, save/load, mixed precision) run on one case
per layer, data format and padding family (`fit=True`), to keep the suite
fast; the per-layer checks run on all.
"""

import keras

from tests.harness import paired_case

_FIT_CASES = {
    "conv2d_channels_last_valid_s1", "conv2d_channels_last_same_s2", "conv2d_channels_last_valid_groups2",
    "conv1d_channels_last_causal_dilation2", "conv1d_channels_last_same_s1",
    "conv2d_channels_first_same_s1", "conv1d_channels_first_valid_s2",
    "max_channels_last_valid_spool_2d", "max_channels_first_same_s1_1d",
    "average_channels_last_same_spool_2d", "average_channels_first_valid_spool_1d",
    "global_max_channels_last_keepdims0_2d", "global_average_channels_first_keepdims1_1d",
    "batchnorm_train_last", "batchnorm_train_axis1", "batchnorm_infer_no_scale_center",
    "layernorm_last", "layernorm_axes12",
}


def _pair(name, class_name, input_shape, call_kwargs=None, reference_jit=False, **kwargs):
    """A case whose two layers are `class_name(**kwargs)` from keras_bp and from Keras."""
    via_last = class_name.startswith("Conv") and kwargs.get("data_format") == "channels_first"
    return paired_case(name, class_name, input_shape, name in _FIT_CASES, call_kwargs, via_last, reference_jit, **kwargs)


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
assert {case.id for case in CASES if case.fit} == _FIT_CASES
