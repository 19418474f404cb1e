"""`keras_bp.convert` on real models: what it swaps, what it keeps, same numbers, step time.

    python benchmarks/convert_models.py                    # every model below (tens of minutes on 2 cores)
    python benchmarks/convert_models.py --only ResNet50,U-Net
    python benchmarks/convert_models.py --no-time          # share, kept layers and differences only
    python benchmarks/convert_models.py --float64          # and each side's error against float64

The models: keras.applications' ResNet50, ResNet50V2, DenseNet121,
InceptionV3, Xception, MobileNetV2, MobileNetV3Small, EfficientNetB0,
NASNetMobile, ConvNeXtTiny and VGG16 (weights=None, the smallest input each
accepts, 5 classes), and keras-io's classic examples rebuilt as their pages
write them (the MNIST convnet, the Oxford pets U-Net, the DCGAN generator
and discriminator, the VAE, the convolutional denoising autoencoder, the
time-series anomaly autoencoder), at small inputs.

For each model it prints:
- share: `report.manual_parameter_share`, the trainable parameters now behind
  hand-derived backward passes;
- kept: the layers left as they were, by class and reason. A layer of a
  `keras.layers` class kept (other than InputLayer) is a gap: it is listed
  under "GAP" and the script exits with status 1 (as it does when a
  gradient differs by more than 1e-5 from the original's and, with
  --float64, is also further than the original's from the float64 twin's);
- out, grad: the largest difference between the original and the converted
  model's outputs and gradients (of the mean of the squared outputs, with
  respect to every trainable variable), relative to the largest value of
  the original's for that output or variable (a variable whose gradient is
  below 1e-5 of the model's largest, zero by the math, relative to the
  model's largest: see `_relative`), in inference mode and in training mode (BatchNormalization
  on batch statistics; models with dropout or noise layers are compared in
  inference mode only, their random masks being drawn differently);
- with --float64 (models without random layers), each side's gradient against
  the original's float64 twin: how far float32 itself is from the exact value;
- step: training-step time (`train_on_batch`, SGD, mean squared error)
  of the converted model over the original's, median of alternating pairs,
  in wall and CPU time (benchmarks/_common.py `alternating_pair_ratios`).
"""

import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import alternating_pair_ratios, machine  # noqa: E402

CLASSES = 5


def _application(name, size):
    def build():
        import keras

        return getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=CLASSES)

    return build


def mnist_convnet():
    """keras-io: Simple MNIST convnet."""
    from keras import layers

    import keras

    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])


def unet(img_size=(64, 64), num_classes=3):
    """keras-io: Image segmentation with a U-Net-like architecture (Oxford pets)."""
    from keras import layers

    import keras

    inputs = keras.Input(shape=img_size + (3,))
    x = layers.Conv2D(32, 3, strides=2, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous_block_activation = x
    for filters in [64, 128, 256]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(filters, 1, strides=2, padding="same")(previous_block_activation)
        x = layers.add([x, residual])
        previous_block_activation = x
    for filters in [256, 128, 64, 32]:
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.UpSampling2D(2)(x)
        residual = layers.UpSampling2D(2)(previous_block_activation)
        residual = layers.Conv2D(filters, 1, padding="same")(residual)
        x = layers.add([x, residual])
        previous_block_activation = x
    outputs = layers.Conv2D(num_classes, 3, activation="softmax", padding="same")(x)
    return keras.Model(inputs, outputs)


def dcgan_discriminator():
    """keras-io: DCGAN to generate face images (the discriminator, at 32x32)."""
    from keras import layers

    import keras

    return keras.Sequential([
        keras.Input(shape=(32, 32, 3)),
        layers.Conv2D(64, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(128, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(128, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Flatten(),
        layers.Dropout(0.2),
        layers.Dense(1, activation="sigmoid"),
    ], name="discriminator")


def dcgan_generator(latent_dim=128):
    """keras-io: DCGAN to generate face images (the generator, from 4x4 to 32x32)."""
    from keras import layers

    import keras

    return keras.Sequential([
        keras.Input(shape=(latent_dim,)),
        layers.Dense(4 * 4 * 128),
        layers.Reshape((4, 4, 128)),
        layers.Conv2DTranspose(128, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2DTranspose(256, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2DTranspose(512, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(3, kernel_size=5, padding="same", activation="sigmoid"),
    ], name="generator")


def vae(latent_dim=2):
    """keras-io: Variational AutoEncoder (encoder and decoder as nested models, the sampling layer the page's)."""
    from keras import layers

    import keras

    @keras.saving.register_keras_serializable(package="convert_models")
    class Sampling(layers.Layer):
        """Uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = keras.random.SeedGenerator(1337)

        def call(self, inputs):
            z_mean, z_log_var = inputs
            epsilon = keras.random.normal(shape=keras.ops.shape(z_mean), seed=self.seed_generator)
            return z_mean + keras.ops.exp(0.5 * z_log_var) * epsilon

    encoder_inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    encoder = keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")

    latent_inputs = keras.Input(shape=(latent_dim,))
    x = layers.Dense(7 * 7 * 64, activation="relu")(latent_inputs)
    x = layers.Reshape((7, 7, 64))(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    decoder_outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    decoder = keras.Model(latent_inputs, decoder_outputs, name="decoder")

    inputs = keras.Input(shape=(28, 28, 1))
    return keras.Model(inputs, decoder(encoder(inputs)[2]), name="vae")


def denoising_autoencoder():
    """keras-io: Convolutional autoencoder for image denoising."""
    from keras import layers

    import keras

    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(inputs)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(x)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)
    return keras.Model(inputs, x)


def timeseries_autoencoder():
    """keras-io: Timeseries anomaly detection using an Autoencoder."""
    from keras import layers

    import keras

    return keras.Sequential([
        layers.Input(shape=(288, 1)),
        layers.Conv1D(filters=32, kernel_size=7, padding="same", strides=2, activation="relu"),
        layers.Dropout(rate=0.2),
        layers.Conv1D(filters=16, kernel_size=7, padding="same", strides=2, activation="relu"),
        layers.Conv1DTranspose(filters=16, kernel_size=7, padding="same", strides=2, activation="relu"),
        layers.Dropout(rate=0.2),
        layers.Conv1DTranspose(filters=32, kernel_size=7, padding="same", strides=2, activation="relu"),
        layers.Conv1DTranspose(filters=1, kernel_size=7, padding="same"),
    ])


# (name, builder, batch size)
MODELS = (
    ("ResNet50", _application("ResNet50", 32), 8),
    ("ResNet50V2", _application("ResNet50V2", 32), 8),
    ("DenseNet121", _application("DenseNet121", 32), 8),
    ("InceptionV3", _application("InceptionV3", 75), 4),
    ("Xception", _application("Xception", 71), 4),
    ("MobileNetV2", _application("MobileNetV2", 32), 8),
    ("MobileNetV3Small", _application("MobileNetV3Small", 32), 8),
    ("EfficientNetB0", _application("EfficientNetB0", 32), 8),
    ("NASNetMobile", _application("NASNetMobile", 32), 8),
    ("ConvNeXtTiny", _application("ConvNeXtTiny", 32), 8),
    ("VGG16", _application("VGG16", 32), 8),
    ("keras-io MNIST convnet", mnist_convnet, 32),
    ("keras-io U-Net", unet, 4),
    ("keras-io DCGAN discriminator", dcgan_discriminator, 16),
    ("keras-io DCGAN generator", dcgan_generator, 16),
    ("keras-io VAE", vae, 32),
    ("keras-io denoising autoencoder", denoising_autoencoder, 32),
    ("keras-io time-series autoencoder", timeseries_autoencoder, 32),
)

_RANDOM = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
           "GaussianDropout", "Sampling")


def _all_layers(model):
    seen, stack = [], [model]
    while stack:
        layer = stack.pop()
        seen.append(layer)
        stack.extend(layer._layers if hasattr(layer, "_layers") else [])
    return seen


def _inputs(model, batch, seed=0):
    import numpy as np

    rng = np.random.RandomState(seed)
    return [rng.uniform(0, 1, (batch,) + tuple(t.shape[1:])).astype("float32") for t in model.inputs]


def _outputs_and_gradients(model, xs, training):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        ys = tf.nest.flatten(model(xs if len(xs) > 1 else xs[0], training=training))
        loss = tf.add_n([tf.reduce_mean(tf.cast(y, tf.float32) ** 2) for y in ys])
    return [y.numpy() for y in ys], [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def _relative(a, b, zero=1e-5):
    """The worst over the list of max|x - y| / max|x|, where x counts as zero below `zero` times the list's largest |x|.

    NOTE: some gradients are zero by the math and rounding noise in both
    models (a convolution's bias before a training-mode BatchNormalization,
    which subtracts it again: ResNet50's are 4e-8 of its largest gradient);
    those are compared on the model's scale, max|x - y| / the list's largest |x|.
    """
    import numpy as np

    scale = max(float(np.max(np.abs(x))) for x in a)
    worst = 0.0
    for x, y in zip(a, b):
        own = float(np.max(np.abs(x)))
        worst = max(worst, float(np.max(np.abs(x - y))) / max(own if own > zero * scale else scale, 1e-30))
    return worst


def compare(original, converted, batch, training, reference=None):
    """(out, grad) of the converted model against the original, the worst relative differences.

    With `reference` (the original's float64 twin, same weights), also
    (out, grad) of each float32 model against it: keras_bp's error and
    Keras's own, how far each is from the exact value.
    """
    xs = _inputs(original, batch)
    if [tuple(v.shape) for v in original.trainable_variables] != [tuple(v.shape) for v in converted.trainable_variables]:
        raise AssertionError("the converted model's trainable variables do not line up with the original's")
    out_a, grad_a = _outputs_and_gradients(original, xs, training)
    out_b, grad_b = _outputs_and_gradients(converted, xs, training)
    result = {"against_original": (_relative(out_a, out_b), _relative(grad_a, grad_b))}
    if reference is not None:
        out_r, grad_r = _outputs_and_gradients(reference, [x.astype("float64") for x in xs], training)
        result["keras_bp_vs_float64"] = (_relative(out_r, out_b), _relative(grad_r, grad_b))
        result["keras_vs_float64"] = (_relative(out_r, out_a), _relative(grad_r, grad_a))
    return result


def float64_twin(build, original):
    """The same model built in float64, with the original's weights."""
    import keras

    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    keras.config.set_dtype_policy("float64")
    keras.config.set_floatx("float64")
    try:
        keras.utils.set_random_seed(0)
        twin = build()
    finally:
        keras.config.set_dtype_policy(policy)
        keras.config.set_floatx(floatx)
    assert all(v.dtype == "float64" for v in twin.trainable_variables)
    twin.set_weights(original.get_weights())
    return twin


def step_ratios(original, converted, batch, rounds, calls):
    import keras
    import numpy as np

    xs = _inputs(original, batch)
    ys = [np.zeros((batch,) + tuple(t.shape[1:]), "float32") for t in original.outputs]
    steps = {}
    for name, model in (("original", original), ("converted", converted)):
        model.compile(optimizer=keras.optimizers.SGD(1e-4), loss="mse")
        steps[name] = (lambda m: lambda: m.train_on_batch(xs if len(xs) > 1 else xs[0], ys if len(ys) > 1 else ys[0]))(model)
    return alternating_pair_ratios(steps["converted"], steps["original"], rounds, calls)


def _gaps(report):
    import keras

    gaps = []
    for name, class_name, why in report.kept:
        if class_name != "InputLayer" and hasattr(keras.layers, class_name) and not why.startswith("a keras.ops"):
            gaps.append(f"{name} ({class_name}: {why})")
    return gaps


def _differs(result, tolerance=1e-5):
    """Whether the converted model's gradients are off: by more than `tolerance` from the original's, or,
    where a float64 reference was computed, further from it than the original's own (10% slack) and `tolerance`.
    """
    if "keras_bp_vs_float64" not in result:
        return result["against_original"][1] > tolerance
    ours, theirs = result["keras_bp_vs_float64"][1], result["keras_vs_float64"][1]
    return result["against_original"][1] > tolerance and ours > max(1.1 * theirs, tolerance)


def run(name, build, batch, timing, rounds, calls, float64=False):
    import keras

    import keras_bp

    keras.utils.set_random_seed(0)
    original = build()
    converted, report = keras_bp.convert(original, return_report=True)
    kept = collections.Counter((class_name, why) for _, class_name, why in report.kept)
    random = any(type(layer).__name__ in _RANDOM for layer in _all_layers(original))
    row = dict(name=name, share=report.manual_parameter_share, params=report.trainable_parameters, kept=kept,
               gaps=_gaps(report))
    # A random layer's draws differ between a float32 and a float64 model: no float64 reference for those.
    reference = float64_twin(build, original) if float64 and not random else None
    row["inference"] = compare(original, converted, batch, False, reference)
    row["training"] = None if random else compare(original, converted, batch, True, reference)
    if timing:
        row["step"] = step_ratios(original, converted, batch, rounds, calls)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated model names (as printed)")
    parser.add_argument("--no-time", action="store_true", help="skip the step-time ratios")
    parser.add_argument("--float64", action="store_true",
                        help="also compare both float32 models with the original's float64 twin")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    print(f"machine: {machine()}")
    failed = False
    for name, build, batch in MODELS:
        if only and name not in only:
            continue
        row = run(name, build, batch, not args.no_time, args.rounds, args.calls, args.float64)
        print(f"\n{name}: share {row['share']:.2%} of {row['params']:,} trainable parameters")
        for mode in ("inference", "training"):
            if row[mode] is None:
                print(f"  {mode}: n/a (random layers)")
                continue
            line = "  {}: out {:.1e}, grad {:.1e} against the original".format(mode, *row[mode]["against_original"])
            if "keras_vs_float64" in row[mode]:
                line += "; against float64: keras_bp grad {1:.1e}, Keras grad {3:.1e} (out {0:.1e}, {2:.1e})".format(
                    *row[mode]["keras_bp_vs_float64"], *row[mode]["keras_vs_float64"])
            print(line)
        if "step" in row:
            step = row["step"]
            print(f"  step: {step['wall_ratio']:.3f} wall, {step['cpu_ratio']:.3f} CPU "
                  f"({step['first_s'] * 1e3:.0f} ms converted, {step['second_s'] * 1e3:.0f} ms original)")
        for (class_name, why), n in sorted(row["kept"].items()):
            print(f"  kept {n} x {class_name}: {why}")
        for gap in row["gaps"]:
            print(f"  GAP {gap}")
        failed |= bool(row["gaps"]) or any(_differs(row[mode]) for mode in ("inference", "training") if row[mode])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
