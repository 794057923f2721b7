"""`ResumableCheckpoint` takes its `resume` switch as the bundle command line gives it."""

from __future__ import annotations

import pytest
import torch

from monaiseg.handlers import ResumableCheckpoint


@pytest.mark.parametrize(("given", "expected"), [("false", False), ("False", False), ("true", True), (False, False)])
def test_resume_switch_from_the_command_line(tmp_path, given, expected):
    handler = ResumableCheckpoint(tmp_path, {"model": torch.nn.Linear(1, 1)}, resume=given)
    assert handler.resume is expected


def test_resume_switch_rejects_other_words(tmp_path):
    with pytest.raises(ValueError, match="resume must be true or false"):
        ResumableCheckpoint(tmp_path, {"model": torch.nn.Linear(1, 1)}, resume="maybe")
