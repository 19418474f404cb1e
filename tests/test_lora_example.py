"""examples/lora_finetune.py runs end to end (tiny settings) and trains the adapters alone."""

import pathlib
import re
import subprocess
import sys

import pytest

from tests.test_examples import load_example

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "lora_finetune.py"


def test_lora_finetune_example_trains_only_the_adapters():
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--limit", "1000", "--epochs", "2", "--finetune-epochs", "4", "--batch-size", "32",
         "--rank", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("data: ")
    assert "0 with mismatches" in out.stdout  # the audit: our LoRA gradients agree with autodiff
    last = re.fullmatch(
        r"fine-tuned on rotated digits: test accuracy (\S+) \(was (\S+)\), trainable parameters (\d+) of (\d+)",
        lines[-1],
    )
    assert last, lines[-1]
    after, before, trainable, total = float(last[1]), float(last[2]), int(last[3]), int(last[4])
    # Rank 2 adapters on 784 -> 128 -> 64 -> 10: 2 (784 + 128) + 2 (128 + 64) + 2 (64 + 10).
    assert trainable == 2 * (784 + 128) + 2 * (128 + 64) + 2 * (64 + 10)
    assert total == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10 + trainable
    # Rotated digits fool the pretrained network; a few epochs of adapters alone recover a good part.
    assert before < 0.3 and after > before + 0.2, (before, after)


def test_lora_finetune_example_rejects_a_bad_rank(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example("lora_finetune").parse_args(["--rank", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--rank" in err and "received: 0" in err
