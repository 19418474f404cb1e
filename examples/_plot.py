"""The PNGs the examples write with `--plot`: training curves, gradient flow, or an autoencoder's reconstructions.

    plot_curves(history.history, audit, path)      # loss, accuracy, the audit's error
    plot_gradient_health(monitor, path)            # a GradientMonitor's gradient-flow picture
    plot_reconstructions(originals, reconstructions, path)

Both need matplotlib (`pip install -e ".[examples]"`); without it they say
so on stderr and write nothing, and the example carries on.
"""

import os
import sys

import numpy as np


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib: pip install -e '.[examples]'", file=sys.stderr)
        return None
    return plt


def plot_curves(history, audit, path):
    """Loss and accuracy per epoch (training, and validation where there is one), and the audit's error."""
    plt = _pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label in ((metric, "training"), (f"val_{metric}", "validation")):
            if key in history:
                ax.plot(epochs, history[key], marker="o", label=label)
        ax.set(title=metric, xlabel="epoch")
        ax.legend()
    steps = [r.step for r in audit.records]
    errors = [max(r.max_rel_error, 1e-12) for r in audit.records]
    axes[2].semilogy(steps, errors, marker=".")
    axes[2].set(title="audit: max relative error, manual vs autodiff", xlabel="optimizer step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"curves written to {path}")


def gradient_health_path(curves_path):
    """Where the gradient-flow picture goes next to the curves: `curves.png` -> `curves_gradient_health.png`."""
    stem, ext = os.path.splitext(curves_path)
    return f"{stem}_gradient_health{ext or '.png'}"


def plot_gradient_health(monitor, path):
    """A `GradientMonitor`'s picture: per-layer gradient norms over the steps, and at the last check."""
    if _pyplot() is None:
        return
    monitor.plot(path, title="gradient health (keras_bp.callbacks.GradientMonitor)")
    print(f"gradient health written to {path}")


def plot_reconstructions(originals, reconstructions, path, n=10):
    """The first `n` originals (top row) above their reconstructions, as 28x28 images."""
    plt = _pyplot()
    if plt is None:
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
