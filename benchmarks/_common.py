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
