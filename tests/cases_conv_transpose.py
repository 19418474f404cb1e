"""Harness cases for the transposed convolutions (Conv1DTranspose, Conv2DTranspose, Conv3DTranspose).

Every option that changes the math, in each rank and data format: both
paddings, strides 1 and 2, `output_padding` (with strides 2 and an even
kernel, which the sizes depend on most), dilation 2 (Keras allows it with
strides 1 only), with and without a bias, a fused activation (relu) and one
that runs after the op (sigmoid). A channels_first layer is compared with
Keras's channels_last twin (`KerasReference`: Keras's channels_first
transposed convolution has no CPU kernel), and Keras's dilated one runs
under XLA. The whole-model checks (fit,
save/load, mixed precision) run on a few cases per layer (`fit=True`).
"""

from tests.harness import paired_case

_FIT_CASES = {
    "conv1d_transpose_channels_last_same_s2", "conv1d_transpose_channels_first_valid_output_padding",
    "conv2d_transpose_channels_last_valid_s2", "conv2d_transpose_channels_first_same_output_padding",
    "conv2d_transpose_channels_last_same_dilation2",
    "conv3d_transpose_channels_last_same_s2", "conv3d_transpose_channels_first_valid_s1",
    "conv3d_transpose_channels_last_valid_output_padding",
}

_SHAPES = {  # (channels_last, channels_first), batch first
    1: ((2, 5, 3), (2, 3, 5)),
    2: ((2, 4, 3, 3), (2, 3, 4, 3)),
    3: ((2, 3, 4, 3, 2), (2, 2, 3, 4, 3)),
}


def _pair(name, class_name, input_shape, **kwargs):
    """A case whose two layers are `class_name(**kwargs)` from keras_bp and from Keras.

    Keras's dilated transposed convolution runs under XLA: TensorFlow's CPU
    kernel has no dilation outside oneDNN's float32 path (float16 fails).
    """
    via_last = kwargs.get("data_format") == "channels_first"
    jit = kwargs.get("dilation_rate", 1) != 1
    return paired_case(name, class_name, input_shape, name in _FIT_CASES, via_last=via_last, reference_jit=jit,
                       **kwargs)


def _cases():
    cases = []
    for rank in (1, 2, 3):
        class_name = f"Conv{rank}DTranspose"
        for fmt in ("channels_last", "channels_first"):
            shape = _SHAPES[rank][fmt == "channels_first"]
            for padding in ("valid", "same"):
                tag = f"conv{rank}d_transpose_{fmt}_{padding}"
                for strides in (1, 2):
                    cases.append(_pair(f"{tag}_s{strides}", class_name, shape, filters=3, kernel_size=3,
                                       strides=strides, padding=padding, data_format=fmt, activation="relu",
                                       bias_initializer="random_normal"))
                cases.append(_pair(f"{tag}_output_padding", class_name, shape, filters=2, kernel_size=2, strides=2,
                                   output_padding=1, padding=padding, data_format=fmt, use_bias=False))
                cases.append(_pair(f"{tag}_dilation2", class_name, shape, filters=2, kernel_size=2, dilation_rate=2,
                                   padding=padding, data_format=fmt, activation="sigmoid",
                                   bias_initializer="random_normal"))
    return cases


CASES = _cases()
assert {case.id for case in CASES if case.fit} == _FIT_CASES
