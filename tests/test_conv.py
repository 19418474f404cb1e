"""Edge cases of the convolution, pooling and normalization layers.

The shared harness (tests/cases_conv.py) covers parity, autodiff, finite differences,
fit, save/load and mixed precision; this module covers what a registry entry
cannot say: bad arguments, causality, max-pool ties, BatchNormalization's
modes and moving statistics, groups, channels_first, masks.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import layers


def grads_of(fn, x, upstream=None, jit=False):
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y if upstream is None else y * upstream)
        return y, tape.gradient(loss, x)

    return tf.function(run, jit_compile=True)(x) if jit else run(x)


# --- bad arguments ------------------------------------------------------------

BAD_ARGUMENTS = [
    (layers.Conv2D, dict(filters=0, kernel_size=3), "filters=0"),
    (layers.Conv2D, dict(filters=4, kernel_size=0), "kernel_size=0"),
    (layers.Conv2D, dict(filters=4, kernel_size=(3,)), "kernel_size=(3,)"),
    (layers.Conv2D, dict(filters=4, kernel_size=3, strides=0), "strides=0"),
    (layers.Conv2D, dict(filters=4, kernel_size=3, padding="full"), "padding='full'"),
    (layers.Conv2D, dict(filters=4, kernel_size=3, padding="causal"), "padding='causal'"),
    (layers.Conv2D, dict(filters=4, kernel_size=3, data_format="NHWC"), "data_format='NHWC'"),
    (layers.Conv2D, dict(filters=4, kernel_size=3, groups=0), "groups=0"),
    (layers.Conv2D, dict(filters=5, kernel_size=3, groups=2), "filters=5, groups=2"),
    (layers.Conv2D, dict(filters=4, kernel_size=3, strides=2, dilation_rate=2), "dilation_rate=(2, 2)"),
    (layers.Conv1D, dict(filters=4, kernel_size=3, padding="full"), "padding='full'"),
    (layers.Conv1D, dict(filters=4, kernel_size=3, lora_rank=-2), "lora_rank"),
    (layers.MaxPooling2D, dict(pool_size=0), "pool_size=0"),
    (layers.MaxPooling1D, dict(padding="causal"), "padding='causal'"),
    (layers.AveragePooling2D, dict(pool_size=2, data_format="channels_middle"), "data_format='channels_middle'"),
    (layers.GlobalMaxPooling2D, dict(data_format="NCHW"), "data_format='NCHW'"),
    (layers.BatchNormalization, dict(axis="channels"), "axis='channels'"),
    (layers.BatchNormalization, dict(synchronized=True), "synchronized=True"),
    (layers.BatchNormalization, dict(renorm=True, renorm_clipping={"dmax": -1.0}), "renorm_clipping={'dmax': -1.0}"),
    (layers.LayerNormalization, dict(axis="last"), "axis='last'"),
    (layers.LayerNormalization, dict(axis=[-1, "x"]), "axis=[-1, 'x']"),
]


@pytest.mark.parametrize("cls, kwargs, named", BAD_ARGUMENTS, ids=[n for _, _, n in BAD_ARGUMENTS])
def test_bad_arguments_raise_value_error_naming_the_value(cls, kwargs, named):
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    assert named in str(info.value)


@pytest.mark.parametrize(
    "layer, shape, named",
    [
        (lambda: layers.Conv2D(4, 3), (2, 5, 5), "ndim=4"),
        (lambda: layers.Conv1D(4, 3), (2, 5, 5, 1), "ndim=3"),
        (lambda: layers.MaxPooling2D(), (2, 4, 3), "ndim=4"),
        (lambda: layers.GlobalAveragePooling1D(), (2, 4), "ndim=3"),
        (lambda: layers.Conv2D(4, 5), (2, 4, 6, 3), "kernel_size=(5, 5)"),
        (lambda: layers.Conv1D(4, 3, dilation_rate=3), (2, 6, 3), "kernel_size=(3,)"),
        (lambda: layers.MaxPooling2D((3, 3)), (2, 2, 8, 3), "pool_size=(3, 3)"),
        (lambda: layers.Conv2D(4, 3, groups=2), (2, 5, 5, 3), "groups=2"),
        (lambda: layers.BatchNormalization(axis=3), (2, 5, 5), "axis=3"),
    ],
    ids=["conv2d_rank3", "conv1d_rank4", "maxpool_rank3", "global_rank2", "kernel_too_large",
         "dilated_kernel_too_large", "pool_too_large", "channels_not_divisible", "bn_axis_out_of_range"],
)
def test_bad_input_raises_value_error(layer, shape, named):
    with pytest.raises(ValueError) as info:
        layer()(tf.zeros(shape))
    assert named in str(info.value)


def test_same_padding_accepts_any_case():
    assert layers.Conv2D(2, 3, padding="SAME").padding == "same"
    assert layers.MaxPooling1D(padding="Valid").padding == "valid"


# --- causal padding -------------------------------------------------------------


@pytest.mark.parametrize("dilation", [1, 2])
def test_causal_conv1d_sees_only_the_past(dilation):
    layer = layers.Conv1D(3, 3, padding="causal", dilation_rate=dilation)
    x = tf.random.normal((2, 10, 4))
    y = layer(x)
    assert y.shape == (2, 10, 3)
    for t in range(10):
        # dL/dx for L = sum of output step t: nothing after t may contribute.
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = tf.reduce_sum(layer(x)[:, t])
        g = tape.gradient(out, x).numpy()
        assert np.all(g[:, t + 1 :] == 0)
        assert np.any(g[:, t] != 0)


def test_causal_conv1d_strides_2_output_length():
    assert layers.Conv1D(3, 3, strides=2, padding="causal")(tf.zeros((1, 9, 2))).shape == (1, 5, 3)


# --- max pooling ties -----------------------------------------------------------

TIES = np.array([[1, 1, 0], [1, 0, 2], [0, 2, 2]], np.float32).reshape(1, 3, 3, 1)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
def test_max_pool_ties_route_to_first_max_like_tensorflow(jit):
    x = tf.constant(TIES)
    pool = layers.MaxPooling2D(pool_size=2, strides=1)
    _, ours = grads_of(pool, x, jit=jit)
    _, tfs = grads_of(lambda v: tf.nn.max_pool2d(v, 2, 1, "VALID"), x, jit=jit)
    np.testing.assert_array_equal(ours, tfs)
    # Windows (row-major first max): (0,0)->(0,0); (0,1)->(1,2); (1,0)->(2,1); (1,1)->(1,2).
    expected = np.array([[1, 0, 0], [0, 0, 2], [0, 1, 0]], np.float32)
    np.testing.assert_array_equal(ours.numpy().reshape(3, 3), expected)


def test_max_pool_constant_input_ties_match_keras():
    x = tf.ones((2, 4, 6, 3))
    for padding in ("valid", "same"):
        _, ours = grads_of(layers.MaxPooling2D(3, 2, padding=padding), x)
        _, theirs = grads_of(keras.layers.MaxPooling2D(3, 2, padding=padding), x)
        np.testing.assert_array_equal(ours, theirs)


def test_global_max_pool_ties_split_like_tensorflow():
    x = tf.constant(TIES)
    _, ours = grads_of(layers.GlobalMaxPooling2D(), x)
    _, theirs = grads_of(keras.layers.GlobalMaxPooling2D(), x)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(ours.numpy().reshape(3, 3)[[1, 2, 2], [2, 1, 2]], [1 / 3] * 3)


# --- BatchNormalization -----------------------------------------------------------


def test_batch_norm_training_uses_batch_statistics_and_updates_moving_ones():
    layer = layers.BatchNormalization(momentum=0.8, epsilon=1e-3)
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(16, 5)).astype("float32")
    y = layer(x, training=True).numpy()
    mean, var = x.mean(0), x.var(0)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
    # Keras's momentum: new = old * momentum + batch * (1 - momentum).
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0 * 0.8 + mean * 0.2, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 1 * 0.8 + var * 0.2, rtol=1e-5)
    moving_mean, moving_variance = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    y = layer(x, training=False).numpy()
    np.testing.assert_allclose(y, (x - moving_mean) / np.sqrt(moving_variance + 1e-3), rtol=1e-4, atol=1e-5)
    # Inference leaves the moving statistics alone.
    np.testing.assert_array_equal(layer.moving_mean.numpy(), moving_mean)


def test_batch_norm_frozen_layer_uses_moving_statistics_in_training():
    layer = layers.BatchNormalization()
    x = tf.random.normal((8, 3), mean=5.0)
    layer.build(x.shape)
    layer.trainable = False
    y = layer(x, training=True)
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-3), rtol=1e-5)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), np.zeros(3))


def test_batch_norm_moving_statistics_follow_keras_through_fit():
    def model(module):
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((6,)), module.Dense(4), module.BatchNormalization(momentum=0.9)])
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        return m

    x = np.random.default_rng(1).normal(size=(64, 6)).astype("float32")
    y = np.random.default_rng(2).normal(size=(64, 4)).astype("float32")
    ours, theirs = model(keras_bp.layers), model(keras.layers)
    theirs.set_weights(ours.get_weights())
    ours.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    theirs.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(ours.layers[1].weights, theirs.layers[1].weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_batch_norm_statistics_in_float32_for_half_inputs(policy):
    # x^2 of ~300 overflows float16 (max 65504): statistics must be computed in float32.
    x = tf.random.normal((32, 4), mean=300.0, stddev=30.0)
    keras.config.set_dtype_policy(policy)
    try:
        ours, theirs = layers.BatchNormalization(), keras.layers.BatchNormalization()
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y, y_ref = ours(x, training=True), theirs(x, training=True)
            loss, loss_ref = tf.reduce_sum(tf.cast(y, "float32") ** 2), tf.reduce_sum(tf.cast(y_ref, "float32") ** 2)
    finally:
        keras.config.set_dtype_policy("float32")
    assert y.dtype == y_ref.dtype
    assert np.all(np.isfinite(tf.cast(y, "float32")))
    np.testing.assert_allclose(tf.cast(y, "float32"), tf.cast(y_ref, "float32"), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.moving_variance.numpy(), rtol=1e-4)
    assert ours.moving_variance.dtype == "float32"
    g, g_ref = tape.gradient(loss, [x] + ours.trainable_weights), tape.gradient(loss_ref, [x] + theirs.trainable_weights)
    for a, b in zip(g, g_ref):
        assert a.dtype == b.dtype
        assert np.all(np.isfinite(a))


def test_batch_norm_with_mask_matches_keras():
    x = tf.random.normal((3, 5, 4))
    mask = tf.constant([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]) > 0
    upstream = tf.random.normal(x.shape)
    ours, theirs = layers.BatchNormalization(gamma_initializer="random_normal"), keras.layers.BatchNormalization()
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True, mask=mask) * upstream)
        results.append(tape.gradient(loss, [x] + layer.trainable_weights))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(ours.weights, theirs.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_batch_norm_checks_gradients_of_mean_and_variance_outputs():
    # The training op also outputs the batch mean and variance; a loss on them must backpropagate too.
    from keras_bp.layers.normalization import batch_norm_train_op

    op = batch_norm_train_op([0, 1], 1e-3)
    x = tf.random.normal((4, 3, 2), dtype="float64")
    gamma, beta = tf.random.normal((2,), dtype="float64"), tf.random.normal((2,), dtype="float64")

    def loss(x):
        y, mean, variance = op(x, gamma, beta, None)
        return tf.reduce_sum(y * y) + tf.reduce_sum(mean * [1.0, 2.0]) + tf.reduce_sum(variance * [3.0, -1.0])

    with tf.GradientTape() as tape:
        tape.watch(x)
        manual = tape.gradient(loss(x), x)
    with keras_bp.autodiff(), tf.GradientTape() as tape:
        tape.watch(x)
        reference = tape.gradient(loss(x), x)
    np.testing.assert_allclose(manual, reference, rtol=1e-10, atol=1e-12)


# --- groups, channels_first, masks ---------------------------------------------------


def test_groups_are_separate_convolutions_on_channel_slices():
    layer = layers.Conv2D(6, 3, groups=2, use_bias=False)
    x = tf.random.normal((2, 7, 7, 4))
    y = layer(x)
    kernel = layer.kernel.numpy()  # (3, 3, 2, 6): group g uses input channels 2g..2g+1, filters 3g..3g+2
    halves = [
        tf.nn.conv2d(x[..., 2 * g : 2 * g + 2], kernel[..., 3 * g : 3 * g + 3], 1, "VALID") for g in range(2)
    ]
    np.testing.assert_allclose(y, tf.concat(halves, -1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls, kwargs", [
    (layers.Conv2D, dict(filters=3, kernel_size=2, strides=2, padding="same")),
    (layers.Conv1D, dict(filters=3, kernel_size=2, padding="causal")),
    (layers.MaxPooling2D, dict(pool_size=2, padding="same")),
    (layers.AveragePooling1D, dict(pool_size=3, strides=2)),
])
def test_channels_first_is_channels_last_transposed(cls, kwargs):
    last, first = cls(data_format="channels_last", **kwargs), cls(data_format="channels_first", **kwargs)
    rank = 4 if "2D" in cls.__name__ else 3
    x_last = tf.random.normal((2, 6, 5, 3)[: rank - 1] + (3,))
    to_first = (0, rank - 1) + tuple(range(1, rank - 1))
    x_first = tf.transpose(x_last, to_first)
    last.build(x_last.shape)
    first.build(x_first.shape)
    first.set_weights(last.get_weights())
    y_last, g_last = grads_of(last, x_last)
    y_first, g_first = grads_of(first, x_first)
    np.testing.assert_allclose(tf.transpose(y_last, to_first), y_first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tf.transpose(g_last, to_first), g_first, rtol=1e-5, atol=1e-6)


def test_channels_first_bias_when_last_spatial_size_equals_filters():
    # Keras 3.15's TensorFlow `add` turns `outputs + reshape(bias, (1, F, 1))`
    # into a channels_last BiasAdd whenever outputs.shape[-1] == F, so its
    # channels_first Conv1D with 5 filters and 5 output steps adds the bias
    # along the steps. Ours must add it along the channels.
    layer = layers.Conv1D(5, 3, strides=2, padding="same", data_format="channels_first",
                          bias_initializer="random_normal")
    x = tf.random.normal((2, 4, 9))
    upstream = tf.random.normal((2, 5, 5))
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(y * upstream)
    bias_grad = tape.gradient(loss, layer.bias)
    no_bias = tf.nn.conv1d(tf.transpose(x, (0, 2, 1)), layer.kernel, 2, "SAME")
    np.testing.assert_allclose(y, tf.transpose(no_bias, (0, 2, 1)) + layer.bias[:, None], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias_grad, tf.reduce_sum(upstream, (0, 2)), rtol=1e-5)


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_average_pooling_1d_mask_matches_keras(keepdims):
    x = tf.random.normal((3, 5, 2))
    mask = tf.constant([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0]]) > 0
    upstream = tf.random.normal((3, 1, 2) if keepdims else (3, 2))
    y, g = grads_of(lambda v: layers.GlobalAveragePooling1D(keepdims=keepdims)(v, mask=mask), x, upstream)
    y_ref, g_ref = grads_of(lambda v: keras.layers.GlobalAveragePooling1D(keepdims=keepdims)(v, mask=mask), x, upstream)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6)


def test_layer_norm_axis_becomes_sorted_list_like_keras():
    ours, theirs = layers.LayerNormalization(axis=[2, 1]), keras.layers.LayerNormalization(axis=[2, 1])
    ours.build((2, 3, 4))
    theirs.build((2, 3, 4))
    assert ours.axis == theirs.axis == [1, 2]
    assert ours.gamma.shape == theirs.gamma.shape == (3, 4)


def test_configs_match_keras():
    pairs = [
        (layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"), keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")),
        (layers.Conv1D(4, 3, padding="causal", dilation_rate=2), keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=2)),
        (layers.MaxPooling2D(), keras.layers.MaxPooling2D()),
        (layers.AveragePooling1D(3), keras.layers.AveragePooling1D(3)),
        (layers.GlobalMaxPooling1D(keepdims=True), keras.layers.GlobalMaxPooling1D(keepdims=True)),
        (layers.BatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)),
        (layers.LayerNormalization(epsilon=1e-5), keras.layers.LayerNormalization(epsilon=1e-5)),
    ]
    for ours, theirs in pairs:
        a, b = ours.get_config(), theirs.get_config()
        a.pop("name"), b.pop("name")
        assert a == b, type(ours).__name__
