"""Paired per-signal differences of trained models against a reference."""

from __future__ import annotations

import math

import pytest
import torch

from transinr import paired
from transinr.config import ConfigError
from transinr.train import train

from .helpers import folder_config


def test_paired_differences_are_per_signal():
    reference = torch.tensor([10.0, 20.0, 30.0, 40.0])
    rows = paired.paired_differences(reference, {"a": reference + torch.tensor([1.0, 1.0, 1.0, -1.0])})
    assert rows[0].mean == pytest.approx(0.5)
    assert rows[0].standard_error == pytest.approx(1.0 / math.sqrt(4))  # std of (1, 1, 1, -1) is 1
    assert rows[0].share_better == pytest.approx(0.75)
    with pytest.raises(ValueError, match="same signals"):
        paired.paired_differences(reference, {"b": reference[:3]})


def test_the_command_pairs_two_runs_and_refuses_other_data(tmp_path, image_folder, one_thread, capsys):
    runs = []
    for seed in (0, 1):
        config = folder_config(image_folder, checkpoint_every=1000)
        config.train.seed, config.name = seed, f"seed{seed}"
        train(config, tmp_path / config.name, device="cpu", progress=False)
        runs.append(str(tmp_path / config.name))
    rows = paired.cli_main([runs[0], runs[1], runs[0]])
    assert [row.name for row in rows] == ["seed1", "seed0"]
    assert rows[1].mean == 0.0 and rows[1].share_better == 0.0  # the reference against itself
    assert rows[0].differences.abs().sum() > 0
    assert "seed1" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="other data"):
        paired.cli_main([runs[0], "emoji32"])
