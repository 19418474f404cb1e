"""LoRA in Dense, Conv1D, Conv2D and Embedding: Keras's API and file format, our hand-derived backward."""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import layers
from tests.harness import KerasReference, assert_close, dense, gradients

RANK, ALPHA = 2, 3.0


class LoraCase:
    """A layer of ours and Keras's twin, built on `shape`, then `enable_lora(RANK, ALPHA)` on both.

    `jit`: Keras's layer is called under XLA (`KerasReference`; its grouped
    convolution runs on CPU only there), wrapped once LoRA is on, so that its
    traced call includes the adapters.
    """

    def __init__(self, id, make_ours, make_theirs, shape, ids=None, jit=False):
        self.id, self.make_ours, self.shape, self.ids = id, make_ours, shape, ids
        self.make_theirs = (lambda: make_theirs(), jit)

    def inputs(self, seed=0):
        rng = np.random.RandomState(seed)
        if self.ids is not None:
            return [rng.randint(0, self.ids, self.shape).astype("int32")]
        return [rng.standard_normal(self.shape).astype("float32")]

    def built(self, make):
        make, jit = make if isinstance(make, tuple) else (make, False)
        layer = make()
        layer.build(self.shape)
        layer.enable_lora(RANK, lora_alpha=ALPHA)
        # Random A and B (B starts at zero, which would leave dA = 0 untested).
        rng = np.random.RandomState(1)
        layer.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in layer.get_weights()])
        return KerasReference(layer, jit=True) if jit else layer


CASES = [
    LoraCase("dense", lambda: layers.Dense(3, activation="tanh"), lambda: keras.layers.Dense(3, activation="tanh"),
             (4, 5)),
    LoraCase("dense-rank3-no-bias", lambda: layers.Dense(3, use_bias=False),
             lambda: keras.layers.Dense(3, use_bias=False), (2, 3, 5)),
    LoraCase("conv2d", lambda: layers.Conv2D(4, 3, activation="relu"),
             lambda: keras.layers.Conv2D(4, 3, activation="relu"), (2, 6, 5, 3)),
    # Keras's grouped convolution runs on CPU only under XLA (KerasReference).
    LoraCase("conv2d-groups2-same", lambda: layers.Conv2D(4, (3, 2), groups=2, padding="same"),
             lambda: keras.layers.Conv2D(4, (3, 2), groups=2, padding="same"), (2, 5, 4, 4), jit=True),
    LoraCase("conv1d-causal", lambda: layers.Conv1D(3, 2, padding="causal", dilation_rate=2),
             lambda: keras.layers.Conv1D(3, 2, padding="causal", dilation_rate=2), (2, 7, 4)),
    LoraCase("embedding", lambda: layers.Embedding(6, 3), lambda: keras.layers.Embedding(6, 3), (2, 5), ids=6),
]
IDS = [case.id for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_weights_match_keras_and_transfer_both_ways(case):
    ours, theirs = case.built(case.make_ours), case.built(case.make_theirs)
    assert [(w.name, tuple(w.shape), w.trainable) for w in ours.weights] == [
        (w.name, tuple(w.shape), w.trainable) for w in theirs.weights
    ]
    assert [w.dtype for w in ours.weights] == [w.dtype for w in theirs.weights]
    inputs = case.inputs(seed=2)
    for source, destination in ((theirs, ours), (ours, theirs)):
        destination.set_weights([w * 0.9 for w in source.get_weights()])
        source.set_weights(destination.get_weights())
        our_out, our_grads = gradients(ours, inputs)
        their_out, their_grads = gradients(theirs, inputs)
        assert_close(our_out[0], their_out[0], 1e-5, what=f"{case.id}: outputs")
        # Gradients of the float input (if any), the bias (if any), A and B.
        assert len(our_grads) == len(their_grads)
        for i, (a, b) in enumerate(zip(our_grads, their_grads)):
            assert_close(dense(a), dense(b), 1e-5, what=f"{case.id}: gradient {i}")
        assert_close(_merged(ours), _merged(theirs), 1e-6, what=f"{case.id}: merged weight")


def _merged(layer):
    """What `kernel` (`embeddings`) reads: W + s A B."""
    return layer.kernel if hasattr(layer, "kernel") else layer.embeddings


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_manual_matches_autodiff(case):
    layer = case.built(case.make_ours)
    inputs = case.inputs(seed=3)
    _, manual = gradients(layer, inputs)
    with keras_bp.autodiff():
        _, reference = gradients(layer, inputs)
    assert len(manual) == len(reference) == len(layer.trainable_weights) + (case.ids is None)
    for i, (a, b) in enumerate(zip(manual, reference)):
        assert a is not None and b is not None, f"gradient {i} missing"
        assert_close(dense(a), dense(b), 1e-5, what=f"{case.id}: gradient {i}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float64_check_gradients(case):
    layer = case.built(case.make_ours)
    result = keras_bp.check_gradients(layer, *case.inputs(seed=4))
    assert result.passed, str(result)


def test_frozen_kernel_still_gets_its_true_gradient():
    # LoRA freezes W, but the op's gradient for it is dL/dW all the same
    # (a user who unfreezes it trains it correctly).
    layer = CASES[0].built(CASES[0].make_ours)
    x = tf.constant(CASES[0].inputs(seed=5)[0])
    grads = []
    for context in (keras_bp.autodiff, contextlib.nullcontext):
        with context():
            with tf.GradientTape() as tape:
                tape.watch(layer._kernel.value)  # a frozen variable: watched by hand
                loss = tf.reduce_sum(layer(x) ** 2)
            grads.append(tape.gradient(loss, layer._kernel.value))
    assert_close(grads[1], grads[0], 1e-5)


def test_sparse_input_with_lora_matches_autodiff_and_dense_input():
    layer = CASES[0].built(CASES[0].make_ours)
    x = CASES[0].inputs(seed=6)[0] * (np.random.RandomState(6).uniform(size=(4, 5)) > 0.5)
    sparse = tf.sparse.from_dense(x)
    with tf.GradientTape(persistent=True) as tape:
        y_sparse = layer(sparse)
        y_dense = layer(tf.constant(x))
    assert_close(y_sparse, y_dense, 1e-6)
    weights = layer.trainable_weights
    manual = tape.gradient(y_sparse, weights)
    assert isinstance(manual[1], tf.IndexedSlices)  # dA = x^T du touches only the rows x uses
    with keras_bp.autodiff():
        with tf.GradientTape() as tape:
            y = layer(sparse)
        reference = tape.gradient(y, weights)
    for a, b, w in zip(manual, reference, weights):
        assert_close(dense(a), dense(b), 1e-5, what=w.path)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_fit_trains_the_adapters_alone(jit_compile):
    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(0)
    x = rng.standard_normal((32, 6)).astype("float32")
    y = np.tanh(x @ rng.standard_normal((6, 2))).astype("float32")
    model = keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="tanh"), layers.Dense(2)])
    for layer in model.layers:
        layer.enable_lora(2)
    frozen = [layer._kernel.numpy().copy() for layer in model.layers]
    adapters = [w.numpy().copy() for w in model.trainable_weights if "lora" in w.name]
    assert len(model.trainable_weights) == 6 and len(adapters) == 4
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse", jit_compile=jit_compile)
    losses = model.fit(x, y, epochs=5, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < losses[0], losses
    for layer, before in zip(model.layers, frozen):
        np.testing.assert_array_equal(layer._kernel.numpy(), before)
    for w, before in zip([w for w in model.trainable_weights if "lora" in w.name], adapters):
        assert not np.array_equal(w.numpy(), before), w.path


def test_keras_file_saves_the_merged_kernel_and_loads(tmp_path):
    case = CASES[2]  # conv2d
    model = keras.Sequential([keras.Input(case.shape[1:]), layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(2)])
    model.layers[0].enable_lora(2, lora_alpha=4)
    model.layers[2].enable_lora(1)
    rng = np.random.RandomState(7)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    x = case.inputs(seed=7)[0]
    model.save(tmp_path / "lora.keras")
    loaded = keras.models.load_model(tmp_path / "lora.keras")
    for original, layer in zip(model.layers, loaded.layers):
        assert type(layer) is type(original)
        assert layer.get_config() == original.get_config()
    conv = loaded.layers[0]
    assert conv.lora_enabled and (conv.lora_rank, conv.lora_alpha) == (2, 4)
    # As Keras: the file holds W + s A B in W's place, and the adapters restart at zero.
    np.testing.assert_allclose(conv._kernel.numpy(), model.layers[0].kernel.numpy(), rtol=1e-6, atol=1e-7)
    assert not np.any(conv.lora_kernel_a.numpy()) and not np.any(conv.lora_kernel_b.numpy())
    assert_close(loaded.predict(x, verbose=0), model.predict(x, verbose=0), 1e-5)


def test_weights_files_move_between_ours_and_keras_with_and_without_lora(tmp_path):
    x = np.random.RandomState(8).standard_normal((3, 5)).astype("float32")

    def model(lib, lora):
        m = keras.Sequential([keras.Input((5,)), lib.Dense(4, activation="tanh"), lib.Dense(2)])
        if lora:
            for layer in m.layers:
                layer.enable_lora(2)
        return m

    source = model(layers, lora=True)
    rng = np.random.RandomState(9)
    source.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in source.get_weights()])
    source.save_weights(tmp_path / "ours.weights.h5")
    for lib, lora in ((keras.layers, False), (keras.layers, True), (layers, False)):
        destination = model(lib, lora)
        destination.load_weights(tmp_path / "ours.weights.h5")
        assert_close(destination(x), source(x), 1e-5, what=f"{lib.__name__}, lora={lora}")
    theirs = model(keras.layers, lora=True)
    theirs.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in theirs.get_weights()])
    theirs.save_weights(tmp_path / "theirs.weights.h5")
    source.load_weights(tmp_path / "theirs.weights.h5")
    assert_close(source(x), theirs(x), 1e-5)


def test_convert_swaps_keras_lora_layers_and_keeps_quantized_ones():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3),
                              keras.layers.Dense(2)])
    model.layers[0].enable_lora(2)
    model.layers[1].enable_lora(1, lora_alpha=2)
    model.layers[2].quantize("int8")
    rng = np.random.RandomState(10)
    for w in model.layers[0].weights + model.layers[1].weights:
        w.assign(rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype))
    converted, report = keras_bp.convert(model, return_report=True)
    assert [type(layer) for layer in converted.layers] == [layers.Dense, layers.Dense, keras.layers.Dense]
    assert "does not support quantization" in str(report)
    assert converted.layers[1].lora_alpha == 2 and not converted.layers[1]._kernel.trainable
    x = rng.standard_normal((3, 5)).astype("float32")
    assert_close(converted(x), model(x), 1e-5)


def test_config_mirrors_keras_and_lora_rank_enables_lora_at_build():
    ours = layers.Dense(3, lora_rank=2, lora_alpha=4)
    assert (ours.lora_rank, ours.lora_alpha, ours.lora_enabled) == (2, 4, False)
    ours.build((None, 5))
    assert ours.lora_enabled and ours.lora_alpha == 4 and ours._kernel.trainable is False
    assert ours.get_config()["lora_rank"] == 2 and ours.get_config()["lora_alpha"] == 4
    assert "lora_rank" not in layers.Dense(3).get_config()
    # A Keras LoRA config (its Dense writes lora_alpha = lora_rank) builds the same weights in ours.
    theirs = keras.layers.Dense(3, lora_rank=2)
    theirs.build((None, 5))
    clone = layers.Dense.from_config(theirs.get_config())
    clone.build((None, 5))
    assert [(w.name, w.shape, w.trainable) for w in clone.weights] == [
        (w.name, w.shape, w.trainable) for w in theirs.weights
    ]
    for cls in (layers.Conv1D, layers.Embedding):
        args = dict(filters=2, kernel_size=3) if cls is layers.Conv1D else dict(input_dim=4, output_dim=2)
        layer = cls(**args, lora_rank=1, lora_alpha=0.5)
        assert cls.from_config(layer.get_config()).get_config() == layer.get_config()


def test_kernel_and_embeddings_read_the_merged_weight():
    layer = CASES[0].built(CASES[0].make_ours)
    a, b = layer.lora_kernel_a.numpy(), layer.lora_kernel_b.numpy()
    np.testing.assert_allclose(layer.kernel, layer._kernel.numpy() + ALPHA / RANK * a @ b, rtol=1e-6)
    table = CASES[-1].built(CASES[-1].make_ours)
    a, b = table.lora_embeddings_a.numpy(), table.lora_embeddings_b.numpy()
    np.testing.assert_allclose(table.embeddings, table._embeddings.numpy() + ALPHA / RANK * a @ b, rtol=1e-6)
    with pytest.raises(AttributeError, match="build the layer before accessing `kernel`"):
        layers.Dense(2).kernel


@pytest.mark.parametrize(
    "make, call, message",
    [
        (lambda: layers.Dense(2), lambda l: l.enable_lora(2), "Cannot enable lora on a layer that isn't yet built"),
        (lambda: layers.Conv2D(2, 3, kernel_constraint="max_norm"), lambda l: l.enable_lora(2),
         "incompatible with kernel constraints, received: kernel_constraint="),
        (lambda: layers.Embedding(4, 2, embeddings_constraint="non_neg"), lambda l: l.enable_lora(2),
         "incompatible with embedding constraints"),
        (lambda: _built(layers.Dense(2)), lambda l: (l.enable_lora(2), l.enable_lora(3)),
         r"lora is already enabled \(lora_rank=2\), received: rank=3"),
        (lambda: _built(layers.Dense(2)), lambda l: l.enable_lora(0), "rank must be a positive integer, received: rank=0"),
        (lambda: _built(layers.Embedding(4, 2)), lambda l: l.enable_lora(2, lora_alpha=-1.0),
         "lora_alpha must be a number >= 0, received: lora_alpha=-1.0"),
        (lambda: None, lambda _: layers.Conv1D(2, 3, lora_rank=1.5),
         "lora_rank must be a non-negative integer, received: lora_rank=1.5"),
    ],
    ids=["unbuilt", "kernel-constraint", "embeddings-constraint", "twice", "rank-0", "negative-alpha", "float-rank"],
)
def test_enable_lora_errors_name_the_problem(make, call, message):
    layer = make()
    with pytest.raises(ValueError, match=message):
        call(layer)


def _built(layer):
    layer.build((None, 3))
    return layer


def test_mixed_precision_gradients_come_back_in_float32(mixed_precision):
    mixed_precision("mixed_float16")
    for case in (CASES[0], CASES[2], CASES[-1]):
        layer = case.built(case.make_ours)
        outputs, grads = gradients(layer, case.inputs())
        assert outputs[0].dtype == tf.float16
        for w, g in zip(layer.trainable_weights, grads[-len(layer.trainable_weights):]):
            assert g is not None and g.dtype == tf.float32 and w.dtype == "float32", w.path
            assert np.all(np.isfinite(dense(g)))
