"""load_model_weights: strict loading of a bundle checkpoint's model weights."""

from __future__ import annotations

import pytest
import torch

from monaiseg.networks import CheckpointMismatchError, load_model_weights


def test_load_model_weights_strict(tmp_path):
    net = torch.nn.Linear(3, 2)
    torch.save({"model": {k: v + 1 for k, v in net.state_dict().items()}}, tmp_path / "good.pt")
    other = torch.nn.Linear(3, 2)
    assert load_model_weights(other, "none") is other
    load_model_weights(other, tmp_path / "good.pt")
    assert torch.equal(other.weight, net.weight + 1)
    torch.save({"model": {"weight": net.weight}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match="bad.pt.*\n.*missing keys.*bias"):
        load_model_weights(other, tmp_path / "bad.pt")
