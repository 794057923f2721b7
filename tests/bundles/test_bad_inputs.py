"""Bad input for every bundle (parametrised over bundles/): missing, mismatched and code-carrying
checkpoints are refused with the file named, a training whose loss turns NaN stops with one error
naming the batch's files, and nothing is left behind; every checkpoint read in our code is
weights-only. Format-specific cases (corrupt NIfTI / PNG / MP4, channels, labels outside the class
list, prompts outside the image) are in each bundle's own tests."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from conftest import BUNDLE_IDS, BUNDLES, REPO, error_chain


class RunsCode:
    """Pickles to a call of os.system: a checkpoint that runs code when unpickled without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_checkpoint(case: str, path: Path, marker: Path) -> None:
    if case == "wrong_keys":
        torch.save({"model": {"not_a_layer.weight": torch.zeros(3)}}, path)
    elif case == "runs_code":
        torch.save({"model": RunsCode(marker)}, path)
    elif case == "truncated":
        torch.save({"model": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:300])


EXPECTED = {  # what the error must say besides the file's path
    "missing": r"not found",
    "wrong_keys": r"missing keys|unexpected keys|does not match|has no .* weights",
    "runs_code": r"weights.only",
    "truncated": r"cannot be read|weights.only",
}


def configs(bundle: Path, *names: str) -> list[str]:
    return [str(bundle / "configs" / n) for n in (*names, "tiny.json")]


@pytest.mark.parametrize("case", list(EXPECTED))
@pytest.mark.parametrize("bundle", BUNDLES, ids=BUNDLE_IDS)
def test_bad_model_checkpoint_is_refused_naming_the_file(bundle, case, tiny_run, tmp_path):
    from monai.bundle import ConfigParser

    checkpoint, marker = tmp_path / "given" / "model.pt", tmp_path / "code_ran"
    checkpoint.parent.mkdir()
    write_checkpoint(case, checkpoint, marker)
    before = checkpoint.read_bytes() if checkpoint.exists() else None
    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", "evaluate.json"))
    root = tmp_path / "root"
    parser.update({"bundle_root": str(root), **tiny_run(bundle), "model_path": str(checkpoint)})
    with pytest.raises(Exception) as raised:
        parser.get_parsed_content("network")
    message = error_chain(raised.value)
    assert str(checkpoint) in message, message[-2000:]
    assert re.search(EXPECTED[case], message), message[-2000:]
    assert not marker.exists()  # the pickled code never ran
    assert (checkpoint.read_bytes() if checkpoint.exists() else None) == before
    assert not [p for p in root.rglob("*") if p.is_file()] if root.exists() else True  # nothing written


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES, ids=BUNDLE_IDS)
def test_nan_loss_stops_training_naming_the_inputs(bundle, tiny_run, tmp_path):
    """An infinite learning rate turns the weights and then the loss into NaN at the 2nd iteration:
    one error that says so and names the batch's files; no model is saved."""
    from monai.bundle import ConfigWorkflow

    data = tiny_run(bundle)
    workflow = ConfigWorkflow(
        config_file=configs(bundle, "train.json"),
        logging_file=False,
        bundle_root=str(tmp_path),
        **data,
        learning_rate=float("inf"),
        epoch_length=2,
    )
    workflow.initialize()
    with pytest.raises(Exception) as raised:
        workflow.run()
    message = error_chain(raised.value)
    assert re.search(r"\bnan\b|non-finite|not finite", message, re.IGNORECASE), message[-2000:]
    assert data["dataset_dir"] in message or "loss" in message.lower(), message[-2000:]
    assert not (tmp_path / "models" / "model.pt").exists()


def test_every_checkpoint_read_in_our_code_is_weights_only():
    """Static check of monaiseg/, scripts/ and the bundle configs: each torch.load passes
    weights_only=True, except the one explicit, documented conversion of SAM-Med2D's release
    (extract_sam_med2d_weights, which requires trust=True)."""
    allowed = {("monaiseg/networks/sam_builder.py", "weights_only=False")}
    offenders = []
    files = [
        *REPO.joinpath("monaiseg").rglob("*.py"),
        *REPO.joinpath("scripts").rglob("*.py"),
        *REPO.joinpath("bundles").rglob("*.json"),
    ]
    for path in files:
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.end() : match.end() + 300]
            depth, end = 1, 0
            for i, char in enumerate(call):
                end = i
                depth += {"(": 1, ")": -1}.get(char, 0)
                if depth == 0:
                    break
            args = call[:end]
            rel = path.relative_to(REPO).as_posix()
            if "weights_only=True" not in args and (rel, "weights_only=False") not in allowed:
                offenders.append(f"{rel}: torch.load({args})")
    assert not offenders, "\n".join(offenders)


def test_code_carrying_pickle_is_refused_by_our_readers(tmp_path):
    from monaiseg.networks.checkpoint import read_checkpoint
    from monaiseg.networks.sam_builder import read_sam_checkpoint

    path, marker = tmp_path / "evil.pt", tmp_path / "code_ran"
    torch.save({"model": RunsCode(marker)}, path)
    for reader in (read_checkpoint, read_sam_checkpoint):
        with pytest.raises(Exception, match="weights.only") as raised:
            reader(path)
        assert str(path) in str(raised.value)
    assert not marker.exists()
