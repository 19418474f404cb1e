"""A dense autoencoder on MNIST digits, built from keras_bp layers: 784-128-32-128-784.

The encoder squeezes each image through a 32-unit code; the decoder's sigmoid
output is compared with the input itself, by binary cross-entropy (default)
or the textbook half squared error. Gradients are audited during `fit`.

Prints the test reconstruction error (mean squared error per pixel) last and
writes a PNG with test originals above their reconstructions.

Run: python examples/autoencoder.py [--loss bce|half_squared] [--png reconstructions.png]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_bp  # noqa: E402
from _data import DataError, load_mnist  # noqa: E402

LOSSES = {
    "bce": keras_bp.losses.BinaryCrossentropy,
    "half_squared": keras_bp.losses.HalfSquaredError,
}


def build_model(loss="bce", learning_rate=1e-3):
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras_bp.layers.Dense(128, activation="relu"),
            keras_bp.layers.Dense(32, activation="relu"),
            keras_bp.layers.Dense(128, activation="relu"),
            keras_bp.layers.Dense(784, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras_bp.optimizers.Adam(learning_rate), loss=LOSSES[loss]())
    return model


def save_png(originals, reconstructions, path, n=10):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--png needs matplotlib: pip install -e '.[examples]'", file=sys.stderr)
        return
    n = min(n, len(originals))
    fig, axes = plt.subplots(2, n, figsize=(n, 2.2))
    for i in range(n):
        for row, images in enumerate((originals, reconstructions)):
            ax = axes[row, i]
            ax.imshow(images[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
    axes[0, 0].set_title("originals", loc="left", fontsize=8)
    axes[1, 0].set_title("reconstructions", loc="left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"reconstructions written to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="folder of MNIST-format IDX files (plain or .gz)")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="bce")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--limit", type=int, help="use only the first N training images")
    parser.add_argument("--png", default="reconstructions.png", help="where to write the picture ('' for none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2])
    args = parser.parse_args(argv)
    if args.epochs <= 0 or args.batch_size <= 0:
        parser.error(f"--epochs and --batch-size must be positive, received: {args.epochs}, {args.batch_size}")

    keras.utils.set_random_seed(args.seed)
    try:
        (x_train, _), (x_test, _), description = load_mnist(args.data_dir)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"data: {description}")
    x_train = x_train.reshape(len(x_train), 784).astype("float32") / 255.0
    x_test = x_test.reshape(len(x_test), 784).astype("float32") / 255.0
    if args.limit:
        x_train = x_train[: args.limit]

    model = build_model(args.loss, args.learning_rate)
    audit = keras_bp.callbacks.GradientAudit((x_train[:128], x_train[:128]), every=200, verbose=0)
    model.fit(x_train, x_train, epochs=args.epochs, batch_size=args.batch_size, callbacks=[audit],
              verbose=args.verbose)
    reconstructions = model.predict(x_test, batch_size=256, verbose=0)
    if args.png:
        save_png(x_test, reconstructions, args.png)
    print(audit.summary())
    error = float(np.mean((reconstructions - x_test) ** 2))
    print(f"test reconstruction error (mean squared error per pixel): {error:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
