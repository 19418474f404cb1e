"""What the benchmarks share: alternating timing in one process, peak memory in a child process."""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def time_train_steps(model, x, y, steps):
    """Seconds per `train_on_batch` call, over `steps` calls."""
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def alternating_medians(models, x, y, rounds, steps, warmup=3):
    """Median seconds per training step of each model, rounds alternating between them.

    The order flips every round, so neither model always runs second.
    """
    names = list(models)
    for name in names:
        time_train_steps(models[name], x, y, warmup)  # trace, compile, warm up
    times = {name: [] for name in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            times[name].append(time_train_steps(models[name], x, y, steps))
    return {name: statistics.median(t) for name, t in times.items()}


def set_threads(n):
    """n TensorFlow threads within and between ops (0 or None: TensorFlow's default); call before any op runs."""
    if n:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)


def current_rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def report_child_memory(train):
    """In a child process: run `train()`, print peak RSS and its growth during training (KiB)."""
    before = current_rss_kib()
    train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_kib": peak, "growth_kib": peak - before}))


def child_memory(script, args):
    """Runs `python script args` and returns the JSON its last line prints."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine():
    """One line on the machine the numbers come from."""
    import tensorflow as tf
    import keras

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}"
    )


# --- one layer's forward and backward --------------------------------------------


def layer_gradient_step(layer, inputs, jit=False, input_gradient=True):
    """A compiled call: the layer's output on fixed `inputs` and the gradients of sum(y^2).

    The gradients are with respect to the layer's trainable weights and, when
    `input_gradient`, its float inputs too: one forward and one full backward.
    `inputs` is a tensor or a list of tensors (passed as the layer's one
    argument, as Keras's merge and attention layers take them).
    """
    import tensorflow as tf

    flat = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    layer(inputs if isinstance(inputs, (list, tuple)) else flat[0])  # builds it
    watched = [x for x in flat if x.dtype.is_floating] if input_gradient else []

    @tf.function(jit_compile=jit)
    def step(*xs):
        with tf.GradientTape() as tape:
            for x in xs:
                if x.dtype.is_floating and input_gradient:
                    tape.watch(x)
            y = layer(list(xs) if isinstance(inputs, (list, tuple)) else xs[0], training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
        return tape.gradient(loss, [x for x in xs if x.dtype.is_floating and input_gradient] + layer.trainable_weights)

    assert len(watched) + len(layer.trainable_weights) > 0
    return lambda: step(*flat)


def seconds_per_call(step, calls):
    """(wall, CPU) seconds per call of `step`, over `calls` calls; CPU time counts every thread."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        out = step()
    for t in out if isinstance(out, (list, tuple)) else [out]:
        t = getattr(t, "values", t)  # an embedding's gradient is sparse
        if hasattr(t, "numpy"):
            t.numpy()  # wait for the last call
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def alternating_pair_ratios(first, second, rounds, calls, warmup=2):
    """Median over rounds of first's time over second's, in wall and CPU time, and each side's median wall time.

    Each round times both sides once, the order flipping every round; the
    ratio of a round's pair is taken before the median, so a slow stretch of
    the machine hits both sides of a pair alike.
    """
    for _ in range(warmup):
        first(), second()
    wall_ratios, cpu_ratios, walls = [], [], {"first": [], "second": []}
    for r in range(rounds):
        order = (("first", first), ("second", second)) if r % 2 == 0 else (("second", second), ("first", first))
        got = {name: seconds_per_call(step, calls) for name, step in order}
        wall_ratios.append(got["first"][0] / got["second"][0])
        cpu_ratios.append(got["first"][1] / got["second"][1])
        for name in walls:
            walls[name].append(got[name][0])
    return {
        "wall_ratio": statistics.median(wall_ratios),
        "cpu_ratio": statistics.median(cpu_ratios),
        "first_s": statistics.median(walls["first"]),
        "second_s": statistics.median(walls["second"]),
    }


# --- the cost of a callback on `fit` ----------------------------------------------


def hook_timed(callback_class):
    """A subclass of `callback_class` adding up the wall and CPU time spent in its own hooks.

    `hook_s` and `hook_cpu_s` total every hook; `first_s` is the wall time of
    `on_train_begin` (the audit's and the monitor's first check, tracing included).
    """

    class HookTimed(callback_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.hook_s = self.hook_cpu_s = self.first_s = 0.0

        def _timed(self, hook, *args):
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return hook(*args)
            finally:
                self.hook_s += time.perf_counter() - start
                self.hook_cpu_s += time.process_time() - start_cpu

        def on_train_begin(self, logs=None):
            start = time.perf_counter()
            self._timed(super().on_train_begin, logs)
            self.first_s = time.perf_counter() - start

        def on_epoch_begin(self, epoch, logs=None):
            self._timed(super().on_epoch_begin, epoch, logs)

        def on_train_batch_end(self, batch, logs=None):
            self._timed(super().on_train_batch_end, batch, logs)

        def on_epoch_end(self, epoch, logs=None):
            self._timed(super().on_epoch_end, epoch, logs)

    HookTimed.__name__ = f"HookTimed{callback_class.__name__}"
    return HookTimed


def fit_time(make_model, x, y, epochs, batch_size, callback):
    """One fit on a fresh model: (wall s, CPU s) to the end of training, and wall s of the teardown after it.

    The end of training is noted by a callback after `callback`, before `fit`
    tears down its data iterator (whose teardown sometimes blocks for seconds
    on either side: see audit_overhead.py).
    """
    import gc

    import keras

    class TrainEnd(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            self.wall, self.cpu = time.perf_counter(), time.process_time()

    model = make_model()
    end = TrainEnd()
    callbacks = ([callback] if callback is not None else []) + [end]
    # The previous run's model and traced functions are garbage by now;
    # collected here, untimed, they land on neither side's time.
    gc.collect()
    start, start_cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks, verbose=0)
    return end.wall - start, end.cpu - start_cpu, time.perf_counter() - end.wall
