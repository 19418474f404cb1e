"""Harness cases for the 3-D convolution and pooling layers (Conv3D, MaxPooling3D, AveragePooling3D, the global ones).

Every option that changes the math, as tests/cases_conv.py has it for 1-D
and 2-D: both data formats, both paddings, strides 1 and 2, dilation 2,
groups 2 (Keras's grouped convolution is called under XLA, as Keras's CPU
kernel has no groups), a fused activation and sigmoid, LoRA; for pooling
both paddings, strides equal to the pool and 1, keepdims. A channels_first
convolution is compared with Keras's channels_last twin (`KerasReference`).
The whole-model checks (fit, save/load, mixed precision) run on a few cases
per layer (`fit=True`).
"""

from tests.harness import paired_case

_FIT_CASES = {
    "conv3d_channels_last_valid_s2", "conv3d_channels_first_same_s1", "conv3d_channels_last_valid_groups2_s2",
    "conv3d_channels_first_valid_dilation2", "conv3d_channels_last_lora",
    "max3d_channels_last_same_spool", "max3d_channels_first_valid_spool",
    "average3d_channels_last_valid_spool", "average3d_channels_first_same_s1",
    "global_max3d_channels_first_keepdims0", "global_average3d_channels_last_keepdims1",
}


def _pair(name, class_name, input_shape, reference_jit=False, **kwargs):
    """A case whose two layers are `class_name(**kwargs)` from keras_bp and from Keras."""
    via_last = class_name == "Conv3D" and kwargs.get("data_format") == "channels_first"
    return paired_case(name, class_name, input_shape, name in _FIT_CASES, via_last=via_last,
                       reference_jit=reference_jit, **kwargs)


def _conv_cases():
    cases = []
    for fmt in ("channels_last", "channels_first"):
        cf = fmt == "channels_first"
        shape, shape_g = ((2, 2, 4, 5, 4), (2, 4, 4, 5, 4)) if cf else ((2, 4, 5, 4, 2), (2, 4, 5, 4, 4))
        for padding in ("valid", "same"):
            tag = f"conv3d_{fmt}_{padding}"
            for strides in (1, 2):
                cases.append(_pair(f"{tag}_s{strides}", "Conv3D", shape, filters=3, kernel_size=(2, 3, 2),
                                   strides=strides, padding=padding, data_format=fmt, activation="relu",
                                   bias_initializer="random_normal"))
            cases.append(_pair(f"{tag}_dilation2", "Conv3D", shape, filters=2, kernel_size=2, dilation_rate=2,
                               padding=padding, data_format=fmt, use_bias=False))
            cases.append(_pair(f"{tag}_groups2", "Conv3D", shape_g, reference_jit=True, filters=4, kernel_size=2,
                               groups=2, padding=padding, data_format=fmt, activation="sigmoid",
                               bias_initializer="random_normal"))
    # Grouped and strided, for fit: with stride 1 the head's 320 sigmoid features make SGD(0.05) diverge.
    cases.append(_pair("conv3d_channels_last_valid_groups2_s2", "Conv3D", (2, 4, 5, 4, 4), reference_jit=True,
                       filters=4, kernel_size=2, strides=2, groups=2, activation="sigmoid"))
    cases.append(_pair("conv3d_channels_last_lora", "Conv3D", (2, 4, 5, 4, 2), filters=3, kernel_size=2,
                       lora_rank=2, lora_alpha=3.0, activation="tanh"))
    return cases


def _pooling_cases():
    cases = []
    for fmt in ("channels_last", "channels_first"):
        shape = (2, 2, 4, 5, 4) if fmt == "channels_first" else (2, 4, 5, 4, 2)
        for mode in ("Max", "Average"):
            for padding in ("valid", "same"):
                for strides in (None, 1):
                    # Keras's 3-D pooling has no float16 CPU kernel (mixed precision): it runs under XLA.
                    cases.append(_pair(f"{mode.lower()}3d_{fmt}_{padding}_s{strides or 'pool'}", f"{mode}Pooling3D",
                                       shape, reference_jit=True, pool_size=(2, 3, 2), strides=strides,
                                       padding=padding, data_format=fmt))
            for keepdims in (False, True):
                cases.append(_pair(f"global_{mode.lower()}3d_{fmt}_keepdims{int(keepdims)}", f"Global{mode}Pooling3D",
                                   shape, data_format=fmt, keepdims=keepdims))
    return cases


CASES = _conv_cases() + _pooling_cases()
assert {case.id for case in CASES if case.fit} == _FIT_CASES
