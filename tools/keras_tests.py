"""Runs Keras's own unit tests against keras_bp's classes, with only the class under test swapped.

The installed `keras` wheel ships its tests (`keras/src/**/*_test.py` in
site-packages). Each suite below names a Keras test module and the classes
it tests; the module runs in a fresh process in which, before pytest
imports it, every place it can take those classes from
(`keras.src.layers`, `keras.src.losses.losses`, `keras.src.optimizers`,
the module that defines each class) holds keras_bp's class instead.
Nothing is copied into this repository and no assertion, tolerance or
golden value is touched: the tests are Keras's, run where they are
installed.

Usage:
    python tools/keras_tests.py                  # every suite, a table (several minutes)
    python tools/keras_tests.py --only Dense,SGD # suites whose classes include these
    python tools/keras_tests.py --failures       # also name each failing test and its first error line

Keras's rescaling_test.py imports `grain` at its top (`pip install grain`,
not a keras_bp dependency); without it that module cannot be collected, for
Keras's own class as for ours.

A failure is counted as "needs quantization" when the test's name or its
error names quantization (int8, int4, float8, GPTQ, AWQ), and as "private
attribute" when its error reads a private attribute of Keras's class
(`_kernel`, ...): keras_bp does not support the first and does not mirror
the second.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# (Keras test module under keras/src, the classes it tests, a pytest -k expression or None)
SUITES = [
    ("layers/core/dense_test.py", ["Dense"], None),
    ("layers/core/embedding_test.py", ["Embedding"], None),
    ("layers/convolutional/conv_test.py", ["Conv1D", "Conv2D", "Conv3D"], None),
    # Issue 17: the transposed convolutions and the 3-D convolution and pooling layers.
    ("layers/convolutional/conv_transpose_test.py", ["Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"], None),
    # Issue 17: the depthwise and separable convolutions (both Keras test modules cover 1-D and 2-D only).
    ("layers/convolutional/depthwise_conv_test.py", ["DepthwiseConv1D", "DepthwiseConv2D"], None),
    ("layers/convolutional/separable_conv_test.py", ["SeparableConv1D", "SeparableConv2D"], None),
    ("layers/pooling/max_pooling_test.py", ["MaxPooling1D", "MaxPooling2D", "MaxPooling3D"], None),
    ("layers/pooling/average_pooling_test.py", ["AveragePooling1D", "AveragePooling2D", "AveragePooling3D"], None),
    ("layers/pooling/global_max_pooling_test.py", ["GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D"],
     None),
    (
        "layers/pooling/global_average_pooling_test.py",
        ["GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D"],
        None,
    ),
    ("layers/normalization/batch_normalization_test.py", ["BatchNormalization"], None),
    ("layers/normalization/layer_normalization_test.py", ["LayerNormalization"], None),
    ("layers/activations/activation_test.py", ["Activation"], None),
    ("layers/activations/relu_test.py", ["ReLU"], None),
    ("layers/activations/leaky_relu_test.py", ["LeakyReLU"], None),
    ("layers/activations/elu_test.py", ["ELU"], None),
    ("layers/activations/softmax_test.py", ["Softmax"], None),
    # Issue 17: PReLU, spatial and Gaussian dropout, Gaussian noise, group and unit normalization.
    ("layers/activations/prelu_test.py", ["PReLU"], None),
    ("layers/regularization/spatial_dropout_test.py", ["SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"], None),
    ("layers/regularization/gaussian_noise_test.py", ["GaussianNoise"], None),
    ("layers/regularization/gaussian_dropout_test.py", ["GaussianDropout"], None),
    ("layers/normalization/group_normalization_test.py", ["GroupNormalization"], None),
    ("layers/normalization/unit_normalization_test.py", ["UnitNormalization"], None),
    ("layers/regularization/dropout_test.py", ["Dropout"], None),
    ("layers/reshaping/flatten_test.py", ["Flatten"], None),
    ("layers/reshaping/reshape_test.py", ["Reshape"], None),
    # The merge layers and the shape layers (padding, cropping, upsampling, Permute, RepeatVector, Rescaling).
    (
        "layers/merging/merging_test.py",
        ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot"],
        None,
    ),
    ("layers/reshaping/zero_padding1d_test.py", ["ZeroPadding1D"], None),
    ("layers/reshaping/zero_padding2d_test.py", ["ZeroPadding2D"], None),
    ("layers/reshaping/zero_padding3d_test.py", ["ZeroPadding3D"], None),
    ("layers/reshaping/cropping1d_test.py", ["Cropping1D"], None),
    ("layers/reshaping/cropping2d_test.py", ["Cropping2D"], None),
    ("layers/reshaping/cropping3d_test.py", ["Cropping3D"], None),
    ("layers/reshaping/up_sampling1d_test.py", ["UpSampling1D"], None),
    ("layers/reshaping/up_sampling2d_test.py", ["UpSampling2D"], None),
    ("layers/reshaping/up_sampling3d_test.py", ["UpSampling3D"], None),
    ("layers/reshaping/permute_test.py", ["Permute"], None),
    ("layers/reshaping/repeat_vector_test.py", ["RepeatVector"], None),
    ("layers/preprocessing/rescaling_test.py", ["Rescaling"], None),
    ("layers/preprocessing/normalization_test.py", ["Normalization"], None),
    # Attention ("dot" and "concat") and AdditiveAttention.
    ("layers/attention/attention_test.py", ["Attention"], None),
    ("layers/attention/additive_attention_test.py", ["AdditiveAttention"], None),
    # EinsumDense and MultiHeadAttention.
    ("layers/core/einsum_dense_test.py", ["EinsumDense"], None),
    ("layers/attention/multi_head_attention_test.py", ["MultiHeadAttention"], None),
    ("layers/rnn/simple_rnn_test.py", ["SimpleRNN"], None),
    ("layers/rnn/lstm_test.py", ["LSTM"], None),
    ("layers/rnn/gru_test.py", ["GRU"], None),
    (
        "losses/losses_test.py",
        ["MeanSquaredError", "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy"],
        "MeanSquaredErrorTest or BinaryCrossentropyTest or CategoricalCrossentropyTest",
    ),
    ("optimizers/sgd_test.py", ["SGD"], None),
    ("optimizers/adam_test.py", ["Adam"], None),
    ("optimizers/adamw_test.py", ["AdamW"], None),
    ("optimizers/rmsprop_test.py", ["RMSprop"], None),
    ("optimizers/adagrad_test.py", ["Adagrad"], None),
    ("optimizers/adadelta_test.py", ["Adadelta"], None),
    ("optimizers/nadam_test.py", ["Nadam"], None),
]

_QUANTIZATION = re.compile(r"quantiz|int8|int4|float8|gptq|awq", re.IGNORECASE)
_PRIVATE = re.compile(r"has no attribute '_[a-z]")


def _keras_src():
    import keras

    return os.path.join(os.path.dirname(keras.__file__), "src")


def swap(names):
    """Puts keras_bp's class of each name wherever a Keras test module may import it from."""
    import importlib

    import keras_bp

    for name in names:
        ours = next(getattr(m, name) for m in (keras_bp.layers, keras_bp.losses, keras_bp.optimizers) if hasattr(m, name))
        for path in ("keras.src.layers", "keras.src.losses", "keras.src.losses.losses", "keras.src.optimizers"):
            module = importlib.import_module(path)
            if hasattr(module, name):
                keras_class = getattr(module, name)
                setattr(module, name, ours)
                setattr(importlib.import_module(keras_class.__module__), name, ours)


def provide_keras_conftest():
    """The one helper Keras's tests import from the root `conftest.py` of Keras's repository.

    The wheel ships the tests but not that file; `skip_if_backend(backend,
    reason)` skips a test on the named backend, as it does there.
    """
    import types

    import keras
    import pytest

    conftest = types.ModuleType("conftest")
    conftest.skip_if_backend = lambda backend, reason: pytest.mark.skipif(
        keras.backend.backend() == backend, reason=reason
    )
    sys.modules.setdefault("conftest", conftest)


def run_child(module, junit):
    """In this process: swap the suite's classes, then run its Keras test module."""
    import pytest

    _, names, select = next(suite for suite in SUITES if suite[0] == module)
    provide_keras_conftest()
    swap(names)
    args = [os.path.join(_keras_src(), module), "-q", "-p", "no:cacheprovider", "--tb=line",
            "-W", "ignore", f"--junitxml={junit}"]
    if select:
        args += ["-k", select]
    return pytest.main(args)


def run_suite(module, timeout):
    """Runs one suite in a fresh process; returns {test name: None (passed) or its error's first line}."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = os.path.join(tmp, "junit.xml")
        command = [sys.executable, os.path.abspath(__file__), "--child", module, "--junit", junit]
        try:
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"(the suite timed out)": f"timeout after {timeout} s"}
        if not os.path.exists(junit):
            return {"(the suite did not run)": "pytest wrote no report"}
        results = {}
        for case in ElementTree.parse(junit).getroot().iter("testcase"):
            name = case.get("name")
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            if case.find("skipped") is not None:
                continue
            if problem is None:
                results[name] = None
            else:
                text = (problem.get("message") or problem.text or "").strip()
                results[name] = text.splitlines()[0][:200] if text else "failed"
        return results


def kind_of_failure(name, error):
    if _QUANTIZATION.search(name) or _QUANTIZATION.search(error):
        return "quantization"
    if _PRIVATE.search(error):
        return "private attribute"
    return "other"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated class names: run only their suites")
    parser.add_argument("--failures", action="store_true", help="name every failing test and its error")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one suite may take")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--junit", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        sys.exit(run_child(args.child, args.junit))

    only = set(args.only.split(",")) if args.only else None
    print(f"{'Keras test module':52} {'swapped':38} {'passed':>6} {'failed':>6} {'quant.':>6} {'private':>7}")
    totals = [0, 0, 0, 0]
    failures = []
    for module, names, _ in SUITES:
        if only and not only.intersection(names):
            continue
        results = run_suite(module, args.timeout)
        failed = {n: e for n, e in results.items() if e is not None}
        kinds = [kind_of_failure(n, e) for n, e in failed.items()]
        row = [len(results) - len(failed), len(failed), kinds.count("quantization"), kinds.count("private attribute")]
        totals = [t + r for t, r in zip(totals, row)]
        print(f"{module:52} {','.join(names)[:38]:38} {row[0]:6} {row[1]:6} {row[2]:6} {row[3]:7}", flush=True)
        failures += [(module, n, k, e) for (n, e), k in zip(failed.items(), kinds)]
    print(f"{'total':52} {'':38} {totals[0]:6} {totals[1]:6} {totals[2]:6} {totals[3]:7}")
    if args.failures:
        for module, name, kind, error in failures:
            print(f"{module}::{name} [{kind}] {error}")
    other = totals[1] - totals[2] - totals[3]
    print(f"failures other than quantization and private attributes: {other}")


if __name__ == "__main__":
    main()
