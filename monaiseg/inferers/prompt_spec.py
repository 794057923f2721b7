"""What a prompted inferer takes from a user, declared on the inferer class (`prompt_spec`), so that an
app (the MONAI Label tasks) checks a request and builds the pipeline's input by asking the inferer."""

from __future__ import annotations

from dataclasses import dataclass

PROMPT_KINDS = ("points", "box", "mask")
PROMPT_FORMS = ("objects", "object_json", "boxes")


@dataclass(frozen=True)
class PromptSpec:
    """kinds: the prompts an object may be given, among "points" (clicks), "box" and "mask";
    dims: the images it segments (2: (H, W) images, 3: (H, W, D) volumes);
    form: how the prompts reach it, "objects" (per image a list of `ObjectPrompt`, keyword `prompts`),
    "object_json" (per image the JSON of `read_object_prompts`, an object may carry a "mask", keyword
    `prompts`) or "boxes" (per image box rows (K, 4), keyword `boxes`);
    automatic: without prompts it segments on its own.
    An inferer that also keeps sessions for corrections has `session(network, volume)`
    (`monaiseg.inferers.session`)."""

    kinds: frozenset[str]
    dims: frozenset[int]
    form: str
    automatic: bool = False

    def __post_init__(self):
        if not self.kinds or not self.kinds <= set(PROMPT_KINDS):
            raise ValueError(f"prompt kinds must be some of {PROMPT_KINDS}, got {sorted(self.kinds)}")
        if not self.dims or not self.dims <= {2, 3}:
            raise ValueError(f"dims must be some of (2, 3), got {sorted(self.dims)}")
        if self.form not in PROMPT_FORMS:
            raise ValueError(f"form must be one of {PROMPT_FORMS}, got {self.form!r}")
