"""An autoencoder on MNIST digits, built from keras_bp layers: dense (784-128-32-128-784) or, with --conv, convolutional.

The dense encoder squeezes each image through a 32-unit code. The
convolutional one (`--conv`) halves the image twice with strided Conv2D
(28x28x1 -> 14x14x32 -> 7x7x64), and its decoder doubles it back with
Conv2DTranspose (-> 14x14x64 -> 28x28x32), the transposed convolution whose
backward is a convolution (keras_bp/layers/conv_transpose.py), then a 3x3
Conv2D to one sigmoid channel. The decoder's sigmoid output is compared with
the input itself, by binary cross-entropy (default) or the textbook half
squared error. Gradients are audited during `fit`.

Prints the test reconstruction error (mean squared error per pixel) last and
writes a PNG with test originals above their reconstructions
(reconstructions.png unless `--plot PATH` says where, `--plot ''` for none).

Run: python examples/autoencoder.py [--conv] [--loss bce|half_squared] [--plot reconstructions.png]

The flags are examples/_cli.py's (`--help` lists them with their defaults).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_bp  # noqa: E402

import _cli  # noqa: E402
from _data import load_mnist_or_exit  # noqa: E402
from _plot import plot_reconstructions  # noqa: E402

LOSSES = {
    "bce": keras_bp.losses.BinaryCrossentropy,
    "half_squared": keras_bp.losses.HalfSquaredError,
}


def dense_layers():
    L = keras_bp.layers
    return [
        keras.Input((784,)),
        L.Dense(128, activation="relu"),
        L.Dense(32, activation="relu"),
        L.Dense(128, activation="relu"),
        L.Dense(784, activation="sigmoid"),
    ]


def conv_layers():
    L = keras_bp.layers
    return [
        keras.Input((28, 28, 1)),
        L.Conv2D(32, 3, strides=2, padding="same", activation="relu"),  # 14x14x32
        L.Conv2D(64, 3, strides=2, padding="same", activation="relu"),  # 7x7x64: the code
        L.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu"),  # 14x14x64
        L.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),  # 28x28x32
        L.Conv2D(1, 3, padding="same", activation="sigmoid"),  # 28x28x1
    ]


def build_model(loss="bce", learning_rate=1e-3, jit_compile="auto", conv=False):
    model = keras.Sequential(conv_layers() if conv else dense_layers())
    model.compile(optimizer=keras_bp.optimizers.Adam(learning_rate), loss=LOSSES[loss](), jit_compile=jit_compile)
    return model


def parse_args(argv=None):
    parser = _cli.new_parser(__doc__)
    _cli.add_data_dir(parser)
    parser.add_argument("--conv", action="store_true", help="the convolutional autoencoder (Conv2D, Conv2DTranspose)")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="bce", help="default: bce")
    _cli.add_epochs(parser, 10)
    _cli.add_batch_size(parser, 64)
    _cli.add_learning_rate(parser, 1e-3)
    _cli.add_limit(parser)
    _cli.add_seed(parser, 0)
    _cli.add_jit_compile(parser, "auto")
    _cli.add_plot(parser, "test originals above their reconstructions", default="reconstructions.png")
    _cli.add_verbose(parser, 2)
    return _cli.parse(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    (x_train, _), (x_test, _), _ = load_mnist_or_exit(args.data_dir)
    shape = (28, 28, 1) if args.conv else (784,)
    x_train = x_train.reshape((len(x_train),) + shape).astype("float32") / 255.0
    x_test = x_test.reshape((len(x_test),) + shape).astype("float32") / 255.0
    if args.limit:
        x_train = x_train[: args.limit]

    model = build_model(args.loss, args.learning_rate, args.jit_compile, args.conv)
    audit = keras_bp.callbacks.GradientAudit((x_train[:128], x_train[:128]), every=200, verbose=0)
    model.fit(x_train, x_train, epochs=args.epochs, batch_size=args.batch_size, callbacks=[audit],
              verbose=args.verbose)
    reconstructions = model.predict(x_test, batch_size=256, verbose=0)
    if args.plot:
        plot_reconstructions(x_test, reconstructions, args.plot)
    print(audit.summary())
    error = float(np.mean((reconstructions - x_test) ** 2))
    print(f"test reconstruction error (mean squared error per pixel): {error:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
