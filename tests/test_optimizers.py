"""One harness for every keras_bp optimizer.

`VARIANTS` lists each optimizer with option sets of its own arguments,
`BASE_OPTIONS` option sets of `keras.optimizers.Optimizer`'s arguments, and
`CONVERGENCE` the settings each one uses on the test functions. Every test below
runs every optimizer; a new optimizer is one entry in each table.
"""

import functools
import inspect
import json
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bp
from keras_bp import optimizers

NAMES = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Nadam"]

# Option sets of each optimizer's own arguments: one per code path of its
# update_step (defaults are checked equal to Keras's by test_defaults_match_keras).
# The learning rate (0.05, set by make_pair) moves the weights far in 100 steps.
VARIANTS = {
    "SGD": {
        "plain": {},
        "momentum": {"momentum": 0.9},
        "nesterov": {"momentum": 0.9, "nesterov": True},
    },
    "Adagrad": {"accumulator": {"initial_accumulator_value": 0.5, "epsilon": 1e-4}},
    "RMSprop": {
        "default": {},
        "centered_momentum": {"centered": True, "momentum": 0.5, "rho": 0.8},
    },
    "Adadelta": {"rho": {"rho": 0.8, "epsilon": 1e-5}},
    "Adam": {"default": {}, "amsgrad": {"amsgrad": True, "beta_1": 0.8}},
    "AdamW": {"amsgrad": {"amsgrad": True, "weight_decay": 0.1}},
    "Nadam": {"betas": {"beta_1": 0.8, "beta_2": 0.99}},
}

# Option sets of the base optimizer, combined where Keras allows it (the three
# clipping options exclude each other). `exclude_from_weight_decay` is a method,
# so the harness calls it with these names before building.
BASE_OPTIONS = {
    "decay_clipnorm_ema": {
        "weight_decay": 0.05,
        "exclude_from_weight_decay": ["bias"],
        "clipnorm": 1.0,
        "use_ema": True,
        "ema_momentum": 0.9,
        "ema_overwrite_frequency": 3,
    },
    "clipvalue_accumulation_schedule_loss_scale": {
        "clipvalue": 0.5,
        "gradient_accumulation_steps": 3,
        "learning_rate": keras.optimizers.schedules.ExponentialDecay(0.05, 10, 0.5),
        "loss_scale_factor": 64.0,
    },
    "global_clipnorm_callable_learning_rate": {
        "global_clipnorm": 1.0,
        "learning_rate": lambda: 0.03,
    },
}

# (arguments, steps) that reach the minimum of both test functions.
CONVERGENCE = {
    "SGD": ({"learning_rate": 1e-3, "momentum": 0.9}, 2000),
    "Adagrad": ({"learning_rate": 1.0}, 4000),
    "RMSprop": ({"learning_rate": 2e-3, "momentum": 0.9}, 2000),
    "Adadelta": ({"learning_rate": 1.0, "rho": 0.999, "epsilon": 1e-6}, 8000),
    "Adam": ({"learning_rate": 0.05}, 2000),
    "AdamW": ({"learning_rate": 0.05, "weight_decay": 0.0}, 2000),
    "Nadam": ({"learning_rate": 0.05}, 2000),
}

# Arguments for the training tests (fit, mixed precision, distribution, saving).
# Adadelta's first steps are ~learning_rate * sqrt(epsilon): it needs the
# paper's learning rate and a larger epsilon to train in a dozen steps.
TRAIN_OPTIONS = {name: {"learning_rate": 0.05} for name in NAMES}
TRAIN_OPTIONS["Adadelta"] = {"learning_rate": 1.0, "epsilon": 1e-3}

TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
STEPS = 100


def all_variants():
    return [
        pytest.param(name, options, id=f"{name}-{variant}")
        for name, variants in VARIANTS.items()
        for variant, options in variants.items()
    ]


def richest_variants():
    """The last (most option-laden) variant of each optimizer."""
    return [
        pytest.param(name, list(variants.values())[-1], id=name)
        for name, variants in VARIANTS.items()
    ]


def make_pair(name, options):
    """Our optimizer and Keras's, built from the same options."""
    options = dict(options)
    exclude = options.pop("exclude_from_weight_decay", None)
    options.setdefault("learning_rate", 0.05)
    pair = getattr(optimizers, name)(**options), getattr(keras.optimizers, name)(**options)
    if exclude:
        for optimizer in pair:
            optimizer.exclude_from_weight_decay(var_names=exclude)
    return pair


def random_gradients(dtype, steps=STEPS, seed=0):
    """Gradients for a (5, 3) `kernel` and a (3,) `bias`, one row per step."""
    rng = np.random.default_rng(seed)
    return [
        tf.constant(rng.normal(size=(steps,) + shape).astype(dtype))
        for shape in [(5, 3), (3,)]
    ]


def run_steps(optimizer, dtype, gradients):
    """Applies `gradients` step by step inside one tf.function, as fit would.

    Returns the weights and then every optimizer variable, as numpy arrays.
    """
    rng = np.random.default_rng(1)
    weights = [
        keras.Variable(rng.normal(size=(5, 3)), dtype=dtype, name="kernel"),
        keras.Variable(rng.normal(size=(3,)), dtype=dtype, name="bias"),
    ]
    optimizer.build(weights)

    def one_step(step):
        optimizer.apply([g[step] for g in gradients], weights)
        return step + 1

    # autograph=False: tracing Keras's apply through autograph doubles the
    # test time; the loop is written out instead.
    steps = gradients[0].shape[0]
    tf.function(autograph=False)(
        lambda: tf.while_loop(lambda step: step < steps, one_step, [0])
    )()
    return [w.numpy() for w in weights] + [v.numpy() for v in optimizer.variables]


def assert_same_run(ours, theirs, dtype):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=TOLERANCE[dtype], atol=0)


# ---------------------------------------------------------------- parity


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, options", all_variants())
def test_parity_with_keras(name, options, dtype):
    ours, theirs = make_pair(name, options)
    gradients = random_gradients(dtype)
    assert_same_run(
        run_steps(ours, dtype, gradients), run_steps(theirs, dtype, gradients), dtype
    )


@pytest.mark.parametrize("option_set", list(BASE_OPTIONS))
@pytest.mark.parametrize("name", NAMES)
def test_parity_with_keras_base_options(name, option_set):
    ours, theirs = make_pair(name, BASE_OPTIONS[option_set])
    gradients = random_gradients("float32")
    result = run_steps(ours, "float32", gradients)
    assert_same_run(result, run_steps(theirs, "float32", gradients), "float32")
    # The options must change the result, or the parity above proves little.
    assert not np.allclose(result[0], run_without_options(name)[0], rtol=1e-6, atol=0)


@functools.lru_cache(maxsize=None)
def run_without_options(name):
    return run_steps(make_pair(name, {})[0], "float32", random_gradients("float32"))


@pytest.mark.parametrize("name", NAMES)
def test_defaults_match_keras(name):
    ours = inspect.signature(getattr(optimizers, name))
    theirs = inspect.signature(getattr(keras.optimizers, name))
    assert ours.parameters == theirs.parameters


@pytest.mark.parametrize("name, options", all_variants())
def test_get_config_mirrors_init(name, options):
    optimizer = getattr(optimizers, name)(**options)
    config = optimizer.get_config()
    init_args = set(inspect.signature(type(optimizer)).parameters) - {"kwargs"}
    assert set(config) == init_args
    for key, value in options.items():
        assert config[key] == value
    again = type(optimizer).from_config(config)
    assert type(again) is type(optimizer)
    assert again.get_config() == config


# ---------------------------------------------------------------- sparse


@pytest.mark.parametrize("name, options", richest_variants())
def test_sparse_gradient_equals_dense(name, options):
    """An Embedding-style gradient: rows 0 and 4 twice, rows 1 and 3 never."""
    indices = np.array([0, 4, 2, 0, 4])
    rng = np.random.default_rng(2)
    steps = 10
    slices = rng.normal(size=(steps, len(indices), 3))
    dense = np.zeros((steps, 5, 3))
    for step in range(steps):
        np.add.at(dense[step], indices, slices[step])

    results = []
    for sparse in [True, False]:
        optimizer = getattr(optimizers, name)(**{"learning_rate": 0.05, **options})
        weights = [keras.Variable(np.ones((5, 3)), dtype="float64", name="embeddings")]
        for step in range(steps):
            if sparse:
                gradient = tf.IndexedSlices(
                    tf.constant(slices[step]), tf.constant(indices), tf.constant([5, 3])
                )
            else:
                gradient = tf.constant(dense[step])
            optimizer.apply([gradient], weights)
        results.append(weights[0].numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=0)
    assert not np.allclose(results[0], 1.0)


@pytest.mark.parametrize("name", NAMES)
def test_sparse_gradient_with_unique_rows_matches_keras(name):
    """Keras runs its update on the slices; with no repeated row it equals ours."""
    ours, theirs = make_pair(name, {})
    results = []
    for optimizer in (ours, theirs):
        weights = [keras.Variable(np.ones((6, 3)), dtype="float32", name="embeddings")]
        rng = np.random.default_rng(3)
        for _ in range(5):
            values = tf.constant(rng.normal(size=(3, 3)).astype("float32"))
            optimizer.apply(
                [tf.IndexedSlices(values, tf.constant([0, 2, 5]), tf.constant([6, 3]))],
                weights,
            )
        results.append(weights[0].numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=0)


# ---------------------------------------------------------------- convergence


def quadratic(w):
    """0.5 * sum(a * (w - c)^2): curvatures 1..10, minimum at w = c."""
    a = tf.constant(np.linspace(1.0, 10.0, 10), w.dtype)
    c = tf.constant(np.linspace(-1.0, 1.0, 10), w.dtype)
    return 0.5 * tf.reduce_sum(a * (w - c) ** 2)


def rosenbrock(w):
    """(1 - x)^2 + 100 (y - x^2)^2: a curved valley, minimum at (1, 1)."""
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def minimize(name, function, start):
    options, steps = CONVERGENCE[name]
    optimizer = getattr(optimizers, name)(**options)
    w = keras.Variable(start, dtype="float64")

    def one_step(step):
        with tf.GradientTape() as tape:
            loss = function(w.value)
        optimizer.apply([tape.gradient(loss, w.value)], [w])
        return step + 1

    tf.function(autograph=False)(
        lambda: tf.while_loop(lambda step: step < steps, one_step, [0])
    )()
    return w.numpy()


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_quadratic(name):
    w = minimize(name, quadratic, np.zeros(10))
    np.testing.assert_allclose(w, np.linspace(-1.0, 1.0, 10), atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_rosenbrock(name):
    w = minimize(name, rosenbrock, np.array([-1.2, 1.0]))  # 2.2 from the minimum
    assert np.linalg.norm(w - 1.0) < 0.1, w


# ---------------------------------------------------------------- dtypes


# Options under which every optimizer has slots and moves the weights well past
# their rounding error in 5 steps (Adadelta's first steps are ~sqrt(epsilon)).
LOW_PRECISION_OPTIONS = {
    "SGD": {"momentum": 0.9},
    "Adadelta": {"learning_rate": 1.0, "epsilon": 1e-3},
}
LOW_PRECISION_ATOL = {"float16": 5e-3, "bfloat16": 3e-2}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_variables_keep_their_dtype(name, dtype):
    """16-bit weights and slots stay 16-bit and follow the float32 trajectory.

    Not compared with Keras: its Adam, AdamW and Nadam never move a bfloat16
    weight (see keras_bp.optimizers._common.scalar_dtype).
    """
    options = {"learning_rate": 0.1, **LOW_PRECISION_OPTIONS.get(name, {})}
    gradients = [tf.cast(g[:5], dtype) for g in random_gradients("float32")]
    rng = np.random.default_rng(1)
    start = [tf.cast(rng.normal(size=s), dtype) for s in [(5, 3), (3,)]]
    results = {}
    for run_dtype in [dtype, "float32"]:
        optimizer = getattr(optimizers, name)(**options)
        weights = [keras.Variable(x, dtype=run_dtype) for x in start]
        for step in range(5):
            optimizer.apply([tf.cast(g[step], run_dtype) for g in gradients], weights)
        slots = [v for v in optimizer.variables if tuple(v.shape) in [(5, 3), (3,)]]
        assert slots and all(v.dtype == run_dtype for v in slots + weights)
        results[run_dtype] = [tf.cast(w, "float32").numpy() for w in weights]
    atol = LOW_PRECISION_ATOL[dtype]
    for low, full, x in zip(results[dtype], results["float32"], start):
        assert np.max(np.abs(full - tf.cast(x, "float32").numpy())) > 5 * atol
        np.testing.assert_allclose(low, full, rtol=0, atol=atol)


# ---------------------------------------------------------------- fit


def regression_data(n=64):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]]) + 0.3).astype("float32")
    return x, y


def make_model(optimizer, **compile_options):
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(size=w.shape) * 0.5 for w in model.get_weights()])
    model.compile(optimizer=optimizer, loss="mse", **compile_options)
    return model


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_fit_trains(name, jit_compile):
    """The update traces (and compiles with XLA) inside fit and trains.

    Numerical parity with Keras inside tf.function is test_parity_with_keras's
    job; comparing whole fits too would double this file's running time.
    """
    x, y = regression_data()
    optimizer = getattr(optimizers, name)(**TRAIN_OPTIONS[name])
    model = make_model(optimizer, jit_compile=jit_compile)
    start = model.get_weights()
    loss = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history["loss"]
    assert int(optimizer.iterations) == 12
    assert np.isfinite(loss).all() and loss[-1] < 0.8 * loss[0], loss
    assert all(not np.array_equal(a, b) for a, b in zip(start, model.get_weights()))


@pytest.mark.parametrize("name", NAMES)
def test_mixed_precision_trains(name):
    x, y = regression_data()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = make_model(getattr(optimizers, name)(**TRAIN_OPTIONS[name]), run_eagerly=True)
        history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert type(model.optimizer.inner_optimizer) is getattr(optimizers, name)
    assert model.layers[0].kernel.dtype == "float32"
    loss = history.history["loss"]
    assert np.isfinite(loss).all() and loss[-1] < 0.8 * loss[0]


# ---------------------------------------------------------------- save, load, resume


@pytest.mark.parametrize("name", NAMES)
def test_save_load_resume_is_bit_identical(name, tmp_path):
    x, y = regression_data()
    model = make_model(getattr(optimizers, name)(**TRAIN_OPTIONS[name]), run_eagerly=True)
    model.fit(x[:32], y[:32], batch_size=16, verbose=0, shuffle=False)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)

    assert type(loaded.optimizer) is getattr(optimizers, name)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    loaded.run_eagerly = True  # both resume in the same execution mode
    for m in (model, loaded):
        m.fit(x[32:], y[32:], batch_size=16, verbose=0, shuffle=False)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- distribution

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    from keras_bp import optimizers

    rng = np.random.default_rng(6)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]]) + 0.3).astype("float32")
    start = [rng.normal(size=s) * 0.5 for s in [(4, 8), (8,), (8, 1), (1,)]]

    def make_model(name, options):
        model = keras.Sequential([
            keras.Input((4,)),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(1),
        ])
        model.set_weights(start)
        model.compile(getattr(optimizers, name)(**options), loss="mse")
        return model

    def train_mirrored(name, options):
        with mirrored.scope():
            model = make_model(name, options)
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    def train_one_device(name, options):
        # The same 8 steps of 16 examples, eagerly, with no strategy at all.
        model = make_model(name, options)
        for _ in range(2):
            for i in range(0, 64, 16):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean((model(x[i : i + 16]) - y[i : i + 16]) ** 2)
                variables = model.trainable_variables
                model.optimizer.apply(tape.gradient(loss, variables), variables)
        return model.get_weights()

    mirrored = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")]
    )
    results = {"replicas": mirrored.num_replicas_in_sync}
    for name, options in json.loads(sys.argv[1]).items():
        one = train_one_device(name, options)
        two = train_mirrored(name, options)
        results[name] = {
            "max_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(one, two)),
            "max_moved": max(float(np.max(np.abs(a - s))) for a, s in zip(one, start)),
        }
    print("RESULTS" + json.dumps(results))
    """
)


@pytest.fixture(scope="module", autouse=True)
def mirrored_process(request):
    """Starts the MirroredStrategy run in a fresh process, when selected.

    Logical devices must be configured before TensorFlow initialises, which this
    process has long done. Started with the module's first test, it runs on the
    second core while the other tests run here.
    """
    if not any("mirrored" in item.name for item in request.session.items):
        yield None
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(keras_bp.__file__)))
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(TRAIN_OPTIONS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def mirrored_results(mirrored_process):
    stdout, stderr = mirrored_process.communicate(timeout=600)
    lines = [l for l in stdout.splitlines() if l.startswith("RESULTS")]
    assert mirrored_process.returncode == 0 and lines, stderr[-3000:]
    return json.loads(lines[-1][len("RESULTS"):])


@pytest.mark.parametrize("name", NAMES)
def test_mirrored_strategy_matches_one_device(name, mirrored_results):
    assert mirrored_results["replicas"] == 2
    result = mirrored_results[name]
    assert result["max_moved"] > 1e-2  # the weights did train
    assert result["max_diff"] < 1e-5, result


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("name", NAMES)
def test_keras2_lr_spelling_warns_and_works(name):
    with pytest.warns(DeprecationWarning, match="learning_rate"):
        optimizer = getattr(optimizers, name)(lr=0.25)
    assert optimizer.get_config()["learning_rate"] == pytest.approx(0.25)


@pytest.mark.parametrize("name", NAMES)
def test_lr_and_learning_rate_together_raise(name):
    with pytest.raises(ValueError, match=r"learning_rate=0\.1, lr=0\.2"):
        getattr(optimizers, name)(learning_rate=0.1, lr=0.2)
    with pytest.raises(ValueError, match=r"learning_rate=0\.1, lr=0\.2"):
        getattr(optimizers, name)(0.1, lr=0.2)


def test_learning_rate_alone_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        optimizers.SGD(learning_rate=0.1)


BAD_ARGUMENTS = [
    (name, argument, value, message)
    for name in NAMES
    for argument, value, message in [("learning_rate", -0.1, ">= 0")]
] + [
    ("SGD", "momentum", 1.5, r"in \[0, 1\]"),
    ("SGD", "momentum", -0.1, r"in \[0, 1\]"),
    ("RMSprop", "momentum", 1.5, r"in \[0, 1\]"),
    ("RMSprop", "rho", 1.0, r"in \[0, 1\)"),
    ("RMSprop", "rho", -0.5, r"in \[0, 1\)"),
    ("Adadelta", "rho", 1.0, r"in \[0, 1\)"),
    ("Adagrad", "initial_accumulator_value", -1.0, ">= 0"),
] + [
    (name, "epsilon", -1e-7, ">= 0")
    for name in ["Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Nadam"]
] + [
    (name, beta, value, r"in \[0, 1\)")
    for name in ["Adam", "AdamW", "Nadam"]
    for beta in ["beta_1", "beta_2"]
    for value in [1.0, -0.1]
] + [("AdamW", "weight_decay", None, "weight_decay=None")]


@pytest.mark.parametrize(
    "name, argument, value, message",
    [pytest.param(*case, id=f"{case[0]}-{case[1]}={case[2]}") for case in BAD_ARGUMENTS],
)
def test_bad_argument_raises_naming_it(name, argument, value, message):
    with pytest.raises(ValueError, match=message) as error:
        getattr(optimizers, name)(**{argument: value})
    assert f"{argument}={value!r}" in str(error.value)
