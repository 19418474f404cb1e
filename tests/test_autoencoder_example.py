"""examples/autoencoder.py --conv: the convolutional autoencoder, its layers ours, trained end to end."""

from tests.test_examples import _run, load_example


def test_conv_autoencoder_is_built_from_our_transposed_convolutions():
    import keras_bp

    model = load_example("autoencoder").build_model(conv=True)
    kinds = [type(layer) for layer in model.layers]
    assert kinds.count(keras_bp.layers.Conv2DTranspose) == 2
    assert all(type(layer).__module__.startswith("keras_bp.") for layer in model.layers)
    assert model.output_shape == (None, 28, 28, 1)


def test_conv_autoencoder_runs_and_writes_the_picture(tmp_path):
    out = _run("autoencoder.py", "--conv", "--epochs", "2", "--limit", "1000", "--verbose", "0",
               "--plot", str(tmp_path / "rec.png"))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("test reconstruction error")
    error = float(lines[-1].split(": ")[1])
    # Untrained, the sigmoid's 0.5 everywhere is about 0.2 per pixel away from a digit; two short epochs reach 0.04.
    assert 0.0 < error < 0.08
    assert "GradientAudit:" in out.stdout and "0 with mismatches" in out.stdout
    assert (tmp_path / "rec.png").exists()
