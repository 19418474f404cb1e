"""Harness cases for the depthwise and separable convolutions (DepthwiseConv1D/2D, SeparableConv1D/2D).

Every option that changes the math: both data formats, both paddings,
strides 1 and 2, dilation 2 (alone and with strides 2, which Keras 3.15
decomposes and XLA computes directly), depth_multiplier 1 and 2, with and
without a bias, a fused activation and one (sigmoid) that runs after the op.
A channels_first layer is compared with Keras's channels_last twin
(`KerasReference`: Keras's channels_first depthwise convolution transposes
on CPU too, but the twin keeps the comparison the same as Conv's). The
whole-model checks (fit, save/load, mixed precision) run on one case per
layer and data format (`fit=True`).
"""

from tests.harness import paired_case

_FIT_CASES = {
    "depthwise2d_channels_last_same_s2_m2", "depthwise2d_channels_first_valid_dilation2",
    "depthwise1d_channels_last_valid_s1_m1", "depthwise1d_channels_first_same_s2_m2",
    "separable2d_channels_last_same_s2_m2", "separable2d_channels_first_valid_s1_m1",
    "separable1d_channels_last_same_dilation2", "separable1d_channels_first_valid_s2_m2",
}


def _pair(name, class_name, input_shape, **kwargs):
    """A case whose two layers are `class_name(**kwargs)` from keras_bp and from Keras."""
    via_last = kwargs.get("data_format") == "channels_first"
    return paired_case(name, class_name, input_shape, name in _FIT_CASES, via_last=via_last, **kwargs)


def _cases():
    cases = []
    for fmt in ("channels_last", "channels_first"):
        cf = fmt == "channels_first"
        shapes = {2: (2, 3, 7, 6) if cf else (2, 7, 6, 3), 1: (2, 3, 9) if cf else (2, 9, 3)}
        for rank in (2, 1):
            shape = shapes[rank]
            for padding in ("valid", "same"):
                for strides, multiplier in ((1, 1), (2, 2)):
                    tag = f"{fmt}_{padding}_s{strides}_m{multiplier}"
                    cases.append(_pair(f"depthwise{rank}d_{tag}", f"DepthwiseConv{rank}D", shape,
                                       kernel_size=3, strides=strides, depth_multiplier=multiplier,
                                       padding=padding, data_format=fmt, activation="relu",
                                       bias_initializer="random_normal"))
                    cases.append(_pair(f"separable{rank}d_{tag}", f"SeparableConv{rank}D", shape,
                                       filters=4, kernel_size=3, strides=strides, depth_multiplier=multiplier,
                                       padding=padding, data_format=fmt, activation="tanh",
                                       bias_initializer="random_normal"))
                kernel = (3, 2) if rank == 2 else 2
                cases.append(_pair(f"depthwise{rank}d_{fmt}_{padding}_dilation2", f"DepthwiseConv{rank}D", shape,
                                   kernel_size=kernel, dilation_rate=2, padding=padding, data_format=fmt,
                                   use_bias=False))
                cases.append(_pair(f"separable{rank}d_{fmt}_{padding}_dilation2", f"SeparableConv{rank}D", shape,
                                   filters=2, kernel_size=kernel, dilation_rate=2, depth_multiplier=2,
                                   padding=padding, data_format=fmt, use_bias=False))
                cases.append(_pair(f"depthwise{rank}d_{fmt}_{padding}_s2_dilation2", f"DepthwiseConv{rank}D", shape,
                                   kernel_size=2, strides=2, dilation_rate=2, depth_multiplier=2, padding=padding,
                                   data_format=fmt, activation="sigmoid"))
                cases.append(_pair(f"separable{rank}d_{fmt}_{padding}_s2_dilation2", f"SeparableConv{rank}D", shape,
                                   filters=3, kernel_size=2, strides=2, dilation_rate=2, padding=padding,
                                   data_format=fmt, activation="sigmoid"))
    return cases


CASES = _cases()
assert {case.id for case in CASES if case.fit} == _FIT_CASES
