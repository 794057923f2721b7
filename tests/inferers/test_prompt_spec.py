"""What prompted inferers declare (`PromptSpec`, `session`) and the one session type both sessions
implement; the label task asks these instead of the inferer's class name."""

from __future__ import annotations

import pytest

from monaiseg.inferers import (
    BoxCarry,
    BoxCarryInferer,
    BoxCarrySettings,
    ClassPromptInferer,
    InstancePromptInferer,
    InteractiveSession,
    ObjectPromptInferer,
    PromptSpec,
    PropagationInferer,
    VolumeSession,
)


def test_prompted_inferers_declare_what_they_take():
    assert BoxCarryInferer.prompt_spec == PromptSpec(frozenset({"box", "points"}), frozenset({2, 3}), "objects")
    assert PropagationInferer.prompt_spec.dims == {3} and "points" in PropagationInferer.prompt_spec.kinds
    assert ObjectPromptInferer.prompt_spec.form == "object_json" and ObjectPromptInferer.prompt_spec.dims == {2}
    assert InstancePromptInferer.prompt_spec.automatic and InstancePromptInferer.prompt_spec.kinds == {"box"}
    assert not hasattr(ClassPromptInferer, "prompt_spec")  # takes no user prompts
    assert {c for c in (BoxCarryInferer, PropagationInferer, ObjectPromptInferer) if hasattr(c, "session")} == {
        BoxCarryInferer,
        PropagationInferer,
    }


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"kinds": frozenset({"scribble"}), "dims": frozenset({2}), "form": "objects"}, "prompt kinds"),
        ({"kinds": frozenset({"box"}), "dims": frozenset({4}), "form": "objects"}, "dims"),
        ({"kinds": frozenset({"box"}), "dims": frozenset({2}), "form": "rows"}, "form"),
    ],
)
def test_prompt_spec_refuses_unknown_values(kwargs, words):
    with pytest.raises(ValueError, match=words):
        PromptSpec(**kwargs)


def test_both_sessions_are_interactive_sessions_and_settings_are_checked_once():
    assert InteractiveSession in BoxCarry.__mro__ and InteractiveSession in VolumeSession.__mro__
    with pytest.raises(ValueError, match="overlap must be one of"):
        BoxCarryInferer(overlap="max")
    with pytest.raises(TypeError, match="margin"):
        BoxCarryInferer(margin=2)
    assert BoxCarryInferer(letterbox=256, min_iou=0.8).settings == BoxCarrySettings(letterbox=256, min_iou=0.8)
