"""Edge cases of the depthwise and separable convolutions (DepthwiseConv1D/2D, SeparableConv1D/2D).

The shared harness (tests/cases_depthwise.py) covers parity, autodiff, finite
differences, fit, save/load and mixed precision; this module covers what a
registry entry cannot say: bad arguments and inputs (with Keras's words),
what Keras's layers lack (LoRA, causal padding), unequal strides, the
separable layer as a depthwise one followed by a 1x1 Conv2D, and a whole
MobileNetV2 converted to keras_bp's layers.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import layers
from tests.harness import assert_close, gradients

# --- bad arguments ------------------------------------------------------------

BAD_ARGUMENTS = [
    (layers.DepthwiseConv1D, dict(depth_multiplier=0, kernel_size=1),
     "Invalid value for argument `depth_multiplier`. Expected a strictly positive value. Received depth_multiplier=0."),
    (layers.SeparableConv1D, dict(depth_multiplier=0, filters=1, kernel_size=1), "depth_multiplier=0"),
    (layers.SeparableConv1D, dict(depth_multiplier=1, filters=0, kernel_size=1),
     "Invalid value for argument `filters`. Expected a strictly positive value. Received filters=0."),
    (layers.DepthwiseConv2D, dict(depth_multiplier=2, kernel_size=(1, 0)),
     "The `kernel_size` argument must be a tuple of 2 integers. Received kernel_size=(1, 0), including values "
     "{0} that do not satisfy `value > 0`"),
    (layers.SeparableConv2D, dict(filters=2, kernel_size=(2, 2), strides=(1, 0)),
     "The `strides` argument must be a tuple of 2 integers. Received strides=(1, 0)"),
    (layers.DepthwiseConv2D, dict(kernel_size=3, dilation_rate=(2,)), "dilation_rate=(2,)"),
    (layers.DepthwiseConv1D, dict(kernel_size=3, padding="causal"), "padding='causal'"),
    (layers.SeparableConv1D, dict(filters=2, kernel_size=3, padding="causal"), "padding='causal'"),
    (layers.DepthwiseConv2D, dict(kernel_size=3, padding="full"), "padding='full'"),
    (layers.SeparableConv2D, dict(filters=2, kernel_size=3, data_format="NHWC"), "data_format='NHWC'"),
    (layers.DepthwiseConv2D, dict(kernel_size=3, depth_multiplier=1.5), "depth_multiplier=1.5"),
]


@pytest.mark.parametrize("cls, kwargs, named", BAD_ARGUMENTS, ids=[str(k) for _, k, _ in BAD_ARGUMENTS])
def test_bad_arguments_raise_value_error_naming_the_value(cls, kwargs, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        cls(**kwargs)


@pytest.mark.parametrize(
    "layer, shape, named",
    [
        (lambda: layers.DepthwiseConv1D(11, strides=5, data_format="channels_last"), (4, 10, 3),
         "Computed output size would be zero or negative."),
        (lambda: layers.SeparableConv2D(8, 5, strides=2, data_format="channels_last"), (2, 4, 4, 3),
         "Computed output size would be zero or negative."),
        (lambda: layers.DepthwiseConv2D(3), (2, 5, 5), "min_ndim=4"),
        (lambda: layers.SeparableConv1D(2, 3), (2, 5, 5, 1), "rank 3"),
    ],
    ids=["depthwise_empty_output", "separable_empty_output", "depthwise_rank3", "separable1d_rank4"],
)
def test_bad_input_raises_value_error(layer, shape, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        layer()(tf.zeros(shape))


def test_no_lora_as_keras():
    # Keras's depthwise and separable layers have no LoRA; neither have ours.
    assert not hasattr(keras.layers.DepthwiseConv2D(3), "enable_lora")
    assert not hasattr(keras.layers.SeparableConv2D(2, 3), "enable_lora")
    assert not hasattr(layers.DepthwiseConv2D(3), "enable_lora")
    assert not hasattr(layers.SeparableConv2D(2, 3), "enable_lora")
    for cls in (keras.layers.DepthwiseConv2D, layers.DepthwiseConv2D):
        with pytest.raises(ValueError, match="Unrecognized keyword arguments"):
            cls(3, lora_rank=2)


# --- weights and config -------------------------------------------------------


def test_weights_and_config_match_keras():
    x = tf.zeros((1, 6, 5, 3))
    pairs = [
        (layers.DepthwiseConv2D(3, depth_multiplier=2, depthwise_regularizer="l2", bias_constraint="non_neg"),
         keras.layers.DepthwiseConv2D(3, depth_multiplier=2, depthwise_regularizer="l2", bias_constraint="non_neg")),
        (layers.SeparableConv2D(4, 3, depth_multiplier=2, pointwise_initializer="ones", activity_regularizer="l1"),
         keras.layers.SeparableConv2D(4, 3, depth_multiplier=2, pointwise_initializer="ones",
                                      activity_regularizer="l1")),
    ]
    for ours, theirs in pairs:
        ours(x), theirs(x)
        assert [(w.name, w.shape) for w in ours.weights] == [(w.name, w.shape) for w in theirs.weights]
        our_config, their_config = ours.get_config(), theirs.get_config()
        our_config.pop("name"), their_config.pop("name")
        assert list(our_config.items()) == list(their_config.items())
        assert len(ours.losses) == len(theirs.losses)
    assert [w.name for w in pairs[1][0].weights] == ["depthwise_kernel", "pointwise_kernel", "bias"]
    np.testing.assert_array_equal(pairs[1][0].pointwise_kernel.numpy(), np.ones((1, 1, 6, 4)))


def test_keras_config_builds_our_layer_and_back():
    theirs = keras.layers.SeparableConv1D(3, 2, strides=2, depth_multiplier=3, data_format="channels_first")
    ours = layers.SeparableConv1D.from_config(theirs.get_config())
    assert ours.get_config() == theirs.get_config()
    assert keras.layers.SeparableConv1D.from_config(ours.get_config()).get_config() == theirs.get_config()


# --- the math -------------------------------------------------------------------


@pytest.mark.parametrize("cls, kwargs", [
    ("DepthwiseConv2D", dict(kernel_size=3, depth_multiplier=2)),
    ("SeparableConv2D", dict(filters=3, kernel_size=(3, 2), dilation_rate=(1, 2))),
])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_unequal_strides_match_keras_under_xla(cls, kwargs, padding):
    # TensorFlow's CPU depthwise kernel takes only equal strides (Keras's layer
    # raises there); ours runs them under XLA, where Keras's op runs too.
    x = np.random.RandomState(0).standard_normal((2, 7, 8, 3)).astype("float32")
    ours = getattr(layers, cls)(strides=(2, 1), padding=padding, **kwargs)
    theirs = getattr(keras.layers, cls)(strides=(2, 1), padding=padding, **kwargs)
    ours(x)
    tf.function(theirs, jit_compile=True)(x)
    theirs.set_weights(ours.get_weights())
    our_out, our_grads = gradients(ours, [x])
    their_out, their_grads = tf.function(lambda x: gradients(theirs, [x]), jit_compile=True)(x)
    assert_close(our_out[0], their_out[0], 1e-5)
    for a, b in zip(our_grads, their_grads):
        assert_close(a, b, 1e-5)
    report = keras_bp.check_gradients(getattr(layers, cls)(strides=(2, 1), padding=padding, dtype="float64",
                                                            **kwargs), x[:1, :5, :5].astype("float64"))
    assert report.passed, report


def test_separable_is_depthwise_then_pointwise_conv():
    rng = np.random.RandomState(1)
    x = rng.standard_normal((2, 9, 8, 3)).astype("float32")
    separable = layers.SeparableConv2D(4, 3, strides=2, padding="same", depth_multiplier=2, activation="relu",
                                       bias_initializer="random_normal")
    depthwise = layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, use_bias=False)
    pointwise = layers.Conv2D(4, 1, activation="relu")
    composed = keras.Sequential([depthwise, pointwise])
    separable(x), composed(x)
    composed.set_weights(separable.get_weights())
    y, grads = gradients(separable, [x])
    y_composed, grads_composed = gradients(composed, [x])
    assert_close(y[0], y_composed[0], 1e-6)
    for a, b in zip(grads, grads_composed):
        assert_close(a, b, 1e-5)


def test_depthwise_channels_do_not_mix():
    # Output channels c M .. c M + M - 1 depend on input channel c alone.
    layer = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")
    x = tf.random.normal((1, 5, 5, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(layer(x)[..., 2:4])  # channel 1's outputs
    g = tape.gradient(y, x).numpy()
    assert np.all(g[..., [0, 2]] == 0) and np.any(g[..., 1] != 0)


# --- a whole model --------------------------------------------------------------


def test_mobilenet_v2_converts_entirely_with_equal_outputs():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(alpha=0.35, input_shape=(32, 32, 3), weights=None)
    converted, report = keras_bp.convert(model, return_report=True)
    assert report.manual_parameter_share == 1.0, report
    x = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(converted(x, training=False).numpy(), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
