"""examples/_data.py: IDX loading and its errors, and the CNN example end to end."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
from _data import IDX_FILES, DataError, load_idx, load_mnist  # noqa: E402


def write_idx(path, array, compress=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    for key, stem in IDX_FILES.items():
        n = 6 if "train" in key else 4
        array = rng.integers(0, 256, (n, 28, 28)) if key.startswith("x") else rng.integers(0, 10, n)
        write_idx(tmp_path / (stem + (".gz" if key == "x_train" else "")), array, compress=key == "x_train")
    return tmp_path


def test_loads_plain_and_gzipped_idx_files(idx_dir):
    (x_train, y_train), (x_test, y_test), description = load_mnist(str(idx_dir))
    assert x_train.shape == (6, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (6,) and y_train.dtype == np.int64
    assert x_test.shape == (4, 28, 28) and y_test.shape == (4,)
    assert "6 training and 4 test images" in description


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_mnist(str(tmp_path / "nowhere"))


def test_missing_file(idx_dir):
    os.remove(idx_dir / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_mnist(str(idx_dir))


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00\x08\x01\x00\x00\x00\x09abc", "corrupt"),  # says 9 labels, holds 3
    (b"PK\x03\x04 a zip file", "not an IDX file"),
    (b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd", "0x0d"),  # float IDX
])
def test_corrupt_files(tmp_path, content, message):
    path = tmp_path / "labels"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_idx(str(path))


def test_truncated_gzip(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.zeros((3, 28, 28)), compress=True)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="corrupt"):
        load_idx(str(path))


def test_images_and_labels_must_agree(idx_dir):
    write_idx(idx_dir / "t10k-labels-idx1-ubyte", np.zeros(5))
    with pytest.raises(DataError, match="do not fit together"):
        load_mnist(str(idx_dir))


def run_example(*args):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", "cnn_mnist.py"), *args],
                          capture_output=True, text=True, env=env, timeout=900)


def test_cnn_example_trains_and_prints_accuracy_last(idx_dir):
    result = run_example("--data-dir", str(idx_dir), "--epochs", "1", "--batch-size", "3", "--limit", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ")
    assert 0 <= float(last.split(": ")[1]) <= 1


def test_cnn_example_reports_data_errors_without_traceback(tmp_path):
    result = run_example("--data-dir", str(tmp_path / "nowhere"))
    assert result.returncode != 0
    assert "no such folder" in result.stderr
    assert "Traceback" not in result.stderr
