"""The gradient-flow picture: per-layer gradient norms over the checks, and at the last check.

Left: each layer's gradient norm ||g_L|| over optimizer steps, log scale,
the first layer darkest. Right: every layer's ||g_L|| at the last check, in
forward order (input side left), log scale, with the update ratio ||dw|| /
||w|| on a second axis; layers the last check diagnosed are marked. Needs
matplotlib.
"""

import math

import numpy as np

__all__ = ["plot_gradient_flow"]


def plot_gradient_flow(records, path, title=None):
    """Writes the PNG of `records` (a monitor's, oldest first) to `path`; returns `path`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("GradientMonitor.plot needs matplotlib: pip install matplotlib") from error
    if not records:
        raise ValueError("GradientMonitor.plot: no checks have run yet; fit the model with the monitor first.")
    names = [layer.name for layer in records[-1].layers]
    steps = [r.step for r in records]
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, max(len(names), 1)))
    fig, (over_steps, last) = plt.subplots(1, 2, figsize=(13, 4.5))
    for color, name in zip(colors, names):
        norms = [_norm_of(r, name) for r in records]
        over_steps.semilogy(steps, [_positive(n) for n in norms], marker=".", color=color, label=name)
    over_steps.set(title="gradient norm per layer", xlabel="optimizer step", ylabel="||dL/dw|| (log scale)")
    if len(names) <= 12:
        over_steps.legend(fontsize=8)
    final = records[-1]
    x = np.arange(len(names))
    norms = [_positive(layer.grad_norm) for layer in final.layers]
    flagged = {d.layer for d in final.diagnoses}
    bars = last.bar(x, norms, color=[("tab:red" if n in flagged else "tab:blue") for n in names])
    last.set_yscale("log")
    last.set(title=f"at the last check (step {final.step})", ylabel="||dL/dw|| (log scale)")
    last.set_xticks(x, names, rotation=45 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center",
                    fontsize=8)
    # Bars on a log axis start at its bottom: set it a decade below the
    # smallest, and leave two decades above the largest for the legends.
    last.set_ylim(*_log_limits(norms))
    ratios = [_positive(layer.update_ratio) for layer in final.layers]
    twin = last.twinx()
    twin.semilogy(x, ratios, "o", color="tab:orange", label="update ratio ||dw||/||w||")
    twin.axhline(1e-3, color="tab:orange", linestyle=":", linewidth=1)
    twin.set_ylim(*_log_limits(ratios + [1e-3]))
    twin.set_ylabel("update ratio (log scale; dotted: 1e-3)")
    twin.legend(loc="upper right", fontsize=8)
    bars[0].set_label("gradient norm (red: diagnosed)")
    last.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _norm_of(record, name):
    for layer in record.layers:
        if layer.name == name:
            return layer.grad_norm
    return math.nan


def _log_limits(values):
    shown = [v for v in values if v > 0 and math.isfinite(v)] or [1.0]
    return min(shown) / 10, max(shown) * 100


def _positive(value):
    # A log axis cannot show 0 or NaN: left as gaps.
    return value if value > 0 and math.isfinite(value) else np.nan
