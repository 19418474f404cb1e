"""Edge cases of the transposed convolutions and the 3-D convolution and pooling layers.

The shared harness (tests/cases_conv_transpose.py, tests/cases_conv3d.py)
covers parity, autodiff, finite differences, fit, save/load and mixed
precision; this module covers what a registry entry cannot say: Keras's
errors, configs and argument order, output sizes, the duality of a
convolution and its transpose, 3-D pooling in float16 and float64, and
`convert` on a model that uses them.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import layers

TRANSPOSED = ["Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"]
NEW_3D = ["Conv3D", "MaxPooling3D", "AveragePooling3D", "GlobalMaxPooling3D", "GlobalAveragePooling3D"]


def _grads(layer, x, upstream):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * upstream)
    return y, tape.gradient(loss, [x] + layer.trainable_weights)


# --- Keras's errors, words and types --------------------------------------------

BAD_ARGUMENTS = [
    (dict(filters=0, kernel_size=1), "Conv1DTranspose",
     "Invalid value for argument `filters`. Expected a strictly positive value. Received filters=0."),
    (dict(filters=2, kernel_size=(1, 0)), "Conv2DTranspose",
     r"The `kernel_size` argument must be a tuple of 2 integers. Received kernel_size=(1, 0), including values "
     r"{0} that do not satisfy `value > 0`"),
    (dict(filters=2, kernel_size=2, output_padding=-1, strides=2), "Conv2DTranspose",
     "The `output_padding` argument must be a tuple of 2 integers. Received output_padding=-1, including values "
     "{-1} that do not satisfy `value >= 0`"),
    (dict(filters=2, kernel_size=3, strides=(2, 3), output_padding=(1, 3)), "Conv2DTranspose",
     "`output_padding` must be strictly less than `strides` for all dimensions. At dimension 1, "
     "`output_padding` is 3 but `strides` is 3."),
    (dict(filters=8, kernel_size=3, strides=1, output_padding=1), "Conv3DTranspose",
     "`output_padding` must be strictly less than `strides`"),
    (dict(filters=2, kernel_size=(2, 2), strides=2, dilation_rate=(2, 1)), "Conv2DTranspose",
     "`strides > 1` not supported in conjunction with `dilation_rate > 1`. Received: strides=(2, 2) and "
     "dilation_rate=(2, 1)"),
    (dict(filters=2, kernel_size=2, padding="causal"), "Conv1DTranspose", "padding='causal'"),
    (dict(filters=5, kernel_size=2, groups=2), "Conv3D",
     "The number of filters must be evenly divisible by the number of groups. Received: groups=2, filters=5."),
    (dict(filters=4, kernel_size=(2, 2)), "Conv3D", "kernel_size=(2, 2)"),
    (dict(pool_size=(2, 0, 2)), "MaxPooling3D", "pool_size=(2, 0, 2)"),
]


@pytest.mark.parametrize("kwargs, class_name, words", BAD_ARGUMENTS, ids=[f"{c}-{k}" for k, c, _ in BAD_ARGUMENTS])
def test_bad_arguments_raise_value_error_with_keras_words(kwargs, class_name, words):
    with pytest.raises(ValueError) as info:
        getattr(layers, class_name)(**kwargs)
    assert words in str(info.value)
    if not words.startswith("padding="):  # ours names the value; Keras's padding message differs
        with pytest.raises(ValueError) as theirs:
            getattr(keras.layers, class_name)(**kwargs)
        assert words in str(theirs.value) or words in str(theirs.value).replace("\n", " ")


def test_output_padding_zero_is_allowed_as_keras():
    ours = layers.Conv2DTranspose(2, 3, strides=2, output_padding=0)
    assert ours.output_padding == keras.layers.Conv2DTranspose(2, 3, strides=2, output_padding=0).output_padding


@pytest.mark.parametrize(
    "layer, shape",
    [(lambda: layers.Conv2DTranspose(2, 2), (2, 4, 3)), (lambda: layers.Conv3D(2, 2), (2, 4, 4, 3)),
     (lambda: layers.MaxPooling3D(), (2, 4, 4, 3))],
    ids=["transpose_rank3_input", "conv3d_rank4_input", "maxpool3d_rank4_input"],
)
def test_bad_input_rank_raises_value_error(layer, shape):
    with pytest.raises(ValueError):
        layer()(np.zeros(shape, "float32"))


# --- configs, defaults, argument order ---------------------------------------------


@pytest.mark.parametrize("class_name", TRANSPOSED + ["Conv3D", "MaxPooling3D"])
def test_default_config_and_weights_match_keras(class_name):
    rank = int(class_name[-2]) if class_name.endswith("D") else int(class_name[4])
    args = () if "Pooling" in class_name else (3, 2)
    ours, theirs = getattr(layers, class_name)(*args), getattr(keras.layers, class_name)(*args)
    assert {**ours.get_config(), "name": None} == {**theirs.get_config(), "name": None}
    shape = (2,) + (5,) * rank + (4,)
    ours.build(shape), theirs.build(shape)
    assert [(w.name, tuple(w.shape)) for w in ours.weights] == [(w.name, tuple(w.shape)) for w in theirs.weights]


def test_positional_arguments_follow_keras_order():
    # Conv3DTranspose takes data_format before output_padding; Conv1D/2DTranspose after.
    args3 = (4, 3, 2, "same", "channels_first", 1, 1, "relu", False)
    args2 = (4, 3, 2, "same", 1, "channels_first", 1, "relu", False)
    for class_name, args in (("Conv3DTranspose", args3), ("Conv2DTranspose", args2), ("Conv1DTranspose", args2)):
        ours, theirs = getattr(layers, class_name)(*args), getattr(keras.layers, class_name)(*args)
        assert {**ours.get_config(), "name": None} == {**theirs.get_config(), "name": None}, class_name


@pytest.mark.parametrize("class_name", TRANSPOSED + NEW_3D)
def test_config_round_trip_and_keras_config_builds_ours(class_name):
    kwargs = dict(filters=3, kernel_size=2, strides=2, padding="same", activation="relu",
                  kernel_regularizer="l2", bias_constraint="non_neg")
    if "Transpose" in class_name:
        kwargs["output_padding"] = 1
    if "Pooling" in class_name:
        kwargs = dict(data_format="channels_first") if "Global" in class_name else dict(pool_size=2, padding="same")
    layer = getattr(layers, class_name)(**kwargs)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    theirs = getattr(keras.layers, class_name)(**kwargs).get_config()
    assert {**config, "name": None} == {**theirs, "name": None}
    assert getattr(keras.layers, class_name).from_config(config).get_config() == {**config}


# --- output sizes -------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("output_padding", [None, 0, 1, 2])
def test_transposed_output_shapes_match_keras(padding, output_padding):
    for kernel in (1, 2, 3, 4):
        for strides in (1, 2, 3):
            for dilation in (1, 2):
                if (output_padding or 0) >= strides or (strides > 1 and dilation > 1):
                    continue
                kwargs = dict(filters=2, kernel_size=kernel, strides=strides, padding=padding,
                              output_padding=output_padding, dilation_rate=dilation)
                for shape in ((2, 3, 5, 1), (None, None, 4, 1)):
                    ours = layers.Conv2DTranspose(**kwargs).compute_output_shape(shape)
                    theirs = keras.layers.Conv2DTranspose(**kwargs).compute_output_shape(shape)
                    assert tuple(ours) == tuple(theirs), (kwargs, shape)


def test_transposed_output_of_unknown_spatial_size():
    x = keras.Input((None, None, 3))
    y = layers.Conv2DTranspose(2, 3, strides=2, padding="same")(x)
    assert tuple(y.shape) == (None, None, None, 2)
    model = keras.Model(x, y)
    assert model(np.zeros((1, 3, 4, 3), "float32")).shape == (1, 6, 8, 2)


# --- the duality: a transposed convolution is the adjoint of a convolution ----------


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("padding, strides", [("valid", 2), ("same", 2), ("same", 1)])
def test_transpose_is_the_adjoint_of_the_convolution(rank, padding, strides):
    """<C_W^T(x), v> = <x, C_W(v)> with the same kernel, and dx of the transposed layer is C_W(dy)."""
    rng = np.random.RandomState(rank)
    transposed = getattr(layers, f"Conv{rank}DTranspose")(2, 3, strides=strides, padding=padding, use_bias=False)
    conv = getattr(layers, f"Conv{rank}D")(3, 3, strides=strides, padding=padding, use_bias=False)
    x = rng.standard_normal((2,) + (3,) * rank + (3,)).astype("float32")  # the convolution's output shape
    y = transposed(x)
    v = rng.standard_normal(y.shape).astype("float32")
    conv.build(v.shape)
    conv.set_weights(transposed.get_weights())  # kernel_size + (2, 3): a conv kernel from 2 channels to 3
    cv = conv(v)
    assert cv.shape == x.shape
    np.testing.assert_allclose(np.sum(y * v), np.sum(x * cv), rtol=1e-5)
    _, (dx, _) = _grads(transposed, x, v)
    np.testing.assert_allclose(dx, cv, rtol=1e-5, atol=1e-5)


def test_dilated_transpose_matches_keras_under_xla():
    rng = np.random.RandomState(0)
    ours = layers.Conv3DTranspose(2, 2, dilation_rate=(2, 1, 2), padding="same")
    theirs = keras.layers.Conv3DTranspose(2, 2, dilation_rate=(2, 1, 2), padding="same")
    x = rng.standard_normal((2, 4, 3, 4, 3)).astype("float32")
    ours.build(x.shape), theirs.build(x.shape)
    ours.set_weights([rng.standard_normal(w.shape).astype("float32") for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    upstream = rng.standard_normal(ours.compute_output_shape(x.shape)).astype("float32")
    y, grads = _grads(ours, x, upstream)
    y_ref, ref = tf.function(lambda x: _grads(theirs, x, upstream), jit_compile=True)(tf.constant(x))
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv3d_enable_lora_matches_keras():
    rng = np.random.RandomState(1)
    x = rng.standard_normal((2, 4, 4, 4, 2)).astype("float32")
    ours, theirs = layers.Conv3D(3, 2), keras.layers.Conv3D(3, 2)
    ours.build(x.shape), theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    for layer in (ours, theirs):
        layer.enable_lora(2, lora_alpha=4.0)
    theirs.lora_kernel_a.assign(ours.lora_kernel_a)
    theirs.lora_kernel_b.assign(rng.standard_normal((2, 3)).astype("float32"))
    ours.lora_kernel_b.assign(theirs.lora_kernel_b)
    assert [w.name for w in ours.trainable_weights] == [w.name for w in theirs.trainable_weights]
    upstream = rng.standard_normal((2, 3, 3, 3, 3)).astype("float32")
    (y, grads), (y_ref, ref) = _grads(ours, x, upstream), _grads(theirs, x, upstream)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# --- 3-D pooling in float16 and float64 (two 2-D poolings) ---------------------------


@pytest.mark.parametrize("class_name", ["MaxPooling3D", "AveragePooling3D"])
@pytest.mark.parametrize("dtype", ["float16", "float64"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_3d_pooling_by_slices_matches_the_3d_op(class_name, dtype, padding):
    rng = np.random.RandomState(2)
    kwargs = dict(pool_size=(2, 3, 2), strides=(2, 1, 2), padding=padding)
    x = rng.uniform(-2, 2, (2, 5, 4, 5, 3))
    upstream_shape = getattr(keras.layers, class_name)(**kwargs).compute_output_shape(x.shape)
    upstream = rng.standard_normal(upstream_shape)
    y, (dx,) = _grads(getattr(layers, class_name)(dtype=dtype, **kwargs), x.astype(dtype), upstream.astype(dtype))
    assert y.dtype == dtype and dx.dtype == dtype
    # The reference: Keras's layer in float32 (MaxPool3D and AvgPool3D and their gradients).
    y32, (dx32,) = _grads(getattr(keras.layers, class_name)(**kwargs), x.astype("float32"), upstream.astype("float32"))
    tol = 1e-2 if dtype == "float16" else 1e-6
    np.testing.assert_allclose(np.asarray(y, "float64"), y32, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(dx, "float64"), dx32, rtol=tol, atol=tol)


def _tied_max_pool_gradient(dtype, jit=False):
    x = np.zeros((1, 2, 2, 2, 1), dtype)
    x[0, 1, 0, 1, 0] = x[0, 0, 1, 0, 0] = x[0, 1, 1, 1, 0] = 1.0  # three tied maxima in one window
    layer = layers.MaxPooling3D(2, dtype=dtype)
    run = tf.function(_grads, jit_compile=True) if jit else _grads
    return np.argwhere(run(layer, tf.constant(x), np.ones((1, 1, 1, 1, 1), dtype))[1][0].numpy()).tolist()


def test_3d_max_pool_ties_as_tensorflow_on_cpu_and_under_xla():
    x = np.zeros((1, 2, 2, 2, 1), "float32")
    x[0, 1, 0, 1, 0] = x[0, 0, 1, 0, 0] = x[0, 1, 1, 1, 0] = 1.0
    _, (keras_dx,) = _grads(keras.layers.MaxPooling3D(2), tf.constant(x), np.ones((1, 1, 1, 1, 1), "float32"))
    every_tie = [[0, 0, 1, 0, 0], [0, 1, 0, 1, 0], [0, 1, 1, 1, 0]]
    assert np.argwhere(keras_dx.numpy()).tolist() == every_tie  # MaxPool3DGrad on CPU: each tie gets it all
    assert _tied_max_pool_gradient("float32") == every_tie
    assert _tied_max_pool_gradient("float32", jit=True) == [[0, 0, 1, 0, 0]]  # under XLA: the first
    # By slices (float16, float64): the first in (depth, height, width) order, as XLA.
    assert _tied_max_pool_gradient("float64") == [[0, 0, 1, 0, 0]]
    assert _tied_max_pool_gradient("float16") == [[0, 0, 1, 0, 0]]


# --- convert ------------------------------------------------------------------------


def test_model_with_transposed_and_3d_layers_converts_entirely():
    keras.utils.set_random_seed(0)
    volume = keras.Input((4, 6, 6, 2))
    h = keras.layers.Conv3D(4, 2, padding="same", activation="relu")(volume)
    h = keras.layers.MaxPooling3D(2)(h)
    h = keras.layers.Conv3DTranspose(3, 2, strides=2, activation="relu")(h)
    h = keras.layers.AveragePooling3D((1, 2, 2))(h)
    h = keras.layers.GlobalAveragePooling3D()(h)
    image = keras.Input((4, 4, 3))
    g = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1, activation="tanh")(image)
    g = keras.layers.Conv1DTranspose(2, 2, strides=2)(keras.layers.Reshape((64, 2))(g))
    g = keras.layers.GlobalMaxPooling3D()(keras.layers.Reshape((4, 4, 8, 2))(g))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Concatenate()([h, g]))
    model = keras.Model([volume, image], outputs)
    converted, report = keras_bp.convert(model, return_report=True)
    assert report.manual_parameter_share == 1.0, report
    swapped = {cls for _, cls in report.swapped}
    assert {"Conv3D", "MaxPooling3D", "Conv3DTranspose", "Conv2DTranspose", "Conv1DTranspose",
            "AveragePooling3D", "GlobalAveragePooling3D", "GlobalMaxPooling3D"} <= swapped
    rng = np.random.RandomState(4)
    x = [rng.standard_normal((2, 4, 6, 6, 2)).astype("float32"), rng.standard_normal((2, 4, 4, 3)).astype("float32")]
    y = np.eye(3, dtype="float32")[[0, 2]]
    np.testing.assert_allclose(converted(x), model(x), rtol=1e-5, atol=1e-6)
    grads = []
    for m in (model, converted):
        with tf.GradientTape() as tape:
            loss = keras.losses.categorical_crossentropy(y, m(x))
        grads.append(tape.gradient(loss, m.trainable_variables))
    for a, b in zip(*grads):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
