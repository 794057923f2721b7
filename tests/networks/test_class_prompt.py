"""SurgicalSAM networks: prototype class prompt encoder, class embeddings, released-checkpoint key map and
parameter counts (its losses, image bank and class-map decoding: tests/losses, tests/data, tests/inferers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import REPO
from segment_anything.modeling import PromptEncoder

from monaiseg.networks.checkpoint import CheckpointMismatchError
from monaiseg.networks.prototype_prompt import PrototypePromptEncoder, class_embeddings_from_masks
from monaiseg.networks.surgical_sam import (
    RELEASE_SUBDICTS,
    SURGICAL_SAM_TRAINABLE,
    build_surgical_sam,
    load_surgicalsam_release,
)
from monaiseg.networks.trainable import freeze_except, parameter_report

from .checkpoint_manifests import manifest as read_manifest


def small_encoder(dim=4, size=2, tokens=1, seed=0) -> PrototypePromptEncoder:
    torch.manual_seed(seed)
    encoder = PrototypePromptEncoder(
        feat_dim=dim, hidden_dim_dense=3, hidden_dim_sparse=3, size=size, num_tokens=tokens
    )
    for e in encoder.pn_cls_embeddings:
        torch.nn.init.normal_(e.weight)
    return encoder


def test_dense_prompt_is_the_mlp_of_the_queried_class_activated_feature():
    encoder = small_encoder()
    embeddings, prototypes = torch.randn(2, 4, 2, 2), torch.randn(3, 4)
    dense, sparse = encoder(embeddings, prototypes, torch.tensor([[2], [3]]))
    assert dense.shape == (2, 1, 4, 2, 2) and sparse.shape == (2, 1, 3 * 1, 4)
    for b, c in [(0, 2), (1, 3)]:
        expected = torch.empty(4, 2, 2)
        for i in range(2):
            for j in range(2):
                f = embeddings[b, :, i, j]
                a = f * (1 + f @ prototypes[c - 1])  # similarity-activated feature
                hidden = torch.relu(encoder.dense_fc_1.weight[:, :, 0, 0] @ a + encoder.dense_fc_1.bias)
                expected[:, i, j] = encoder.dense_fc_2.weight[:, :, 0, 0] @ hidden + encoder.dense_fc_2.bias
        torch.testing.assert_close(dense[b, 0], expected)


def test_sparse_prompt_marks_the_queried_class_with_the_positive_embedding():
    encoder = small_encoder(tokens=2)
    embeddings, prototypes = torch.randn(1, 4, 2, 2), torch.randn(3, 4)
    _, sparse = encoder(embeddings, prototypes, torch.tensor([[1, 3]]))  # two queries of one image
    negative, positive = (e.weight for e in encoder.pn_cls_embeddings)
    tokens = sparse.view(1, 2, 3, 2, 4)  # (B, K, C, T, D)
    torch.testing.assert_close(
        tokens[0, 0] - tokens[0, 1], torch.stack([positive - negative, torch.zeros_like(positive), negative - positive])
    )
    # class 2 (never queried) gets the learned tokens of its activated feature + the negative embedding
    a = embeddings[0].flatten(1).T * (1 + embeddings[0].flatten(1).T @ prototypes[1])[:, None]  # (N, D)
    hidden = torch.relu(encoder.sparse_fc_1.weight[:, :, 0] @ a + encoder.sparse_fc_1.bias[:, None])
    learned = encoder.sparse_fc_2.weight[:, :, 0] @ hidden + encoder.sparse_fc_2.bias[:, None]
    torch.testing.assert_close(tokens[0, 0, 1], learned + negative)


def test_prompt_encoder_refuses_bad_class_ids_and_sizes():
    encoder = small_encoder()
    with pytest.raises(ValueError, match=r"class ids must lie in 1..3, got \[0, 2\]"):
        encoder(torch.randn(1, 4, 2, 2), torch.randn(3, 4), torch.tensor([[0, 2]]))
    with pytest.raises(ValueError, match="built for 2x2 image embeddings, got 3x3"):
        encoder(torch.randn(1, 4, 3, 3), torch.randn(3, 4), torch.tensor([[1]]))


def test_fixed_embeddings_start_from_sam_point_embeddings_and_stay_frozen():
    sam = PromptEncoder(embed_dim=8, image_embedding_size=(2, 2), input_image_size=(32, 32), mask_in_chans=4)
    encoder = PrototypePromptEncoder(feat_dim=8, size=2, num_tokens=3)
    encoder.init_from_sam(sam)
    for i in (0, 1):  # 0: negative point, 1: positive point
        assert torch.equal(encoder.pn_cls_embeddings[i].weight, sam.point_embeddings[i].weight.expand(3, -1))
        assert not encoder.pn_cls_embeddings[i].weight.requires_grad
    _, sparse = encoder(torch.randn(1, 8, 2, 2), torch.randn(2, 8), torch.tensor([[1]]))
    sparse.sum().backward()
    assert encoder.pn_cls_embeddings[0].weight.grad is None and encoder.sparse_fc_2.weight.grad is not None


def test_class_embeddings_are_mask_weighted_means():
    embeddings = torch.arange(8.0).view(1, 2, 2, 2)  # channel 0: [[0, 1], [2, 3]], channel 1: [[4, 5], [6, 7]]
    labels = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    labels[0, 0, :2, :2] = 2  # exactly cell (0, 0)
    labels[0, 0, 2:, :] = 1  # cells (1, 0) and (1, 1)
    labels[0, 0, 0, 2] = 1  # a quarter of cell (0, 1)
    means, present = class_embeddings_from_masks(embeddings, labels, num_classes=3)
    assert present.tolist() == [[True, True, False]]
    torch.testing.assert_close(means[0, 1], torch.tensor([0.0, 4.0]))
    # class 1: weights 1, 1 (cells (1, 0), (1, 1)) and 0.25 (cell (0, 1)) -> (2 + 3 + 0.25) / 2.25 ...
    torch.testing.assert_close(means[0, 0], torch.tensor([(2 + 3 + 0.25 * 1) / 2.25, (6 + 7 + 0.25 * 5) / 2.25]))
    assert torch.equal(means[0, 2], torch.zeros(2))
    with pytest.raises(ValueError, match=r"must hold 0..3, got values \[0, 1, 2, 9\]"):
        labels[0, 0, 3, 3] = 9
        class_embeddings_from_masks(embeddings, labels, num_classes=3)


@pytest.fixture(scope="module")
def full_size_model():
    """SurgicalSAM at 1024 px (64 x 64 embeddings as released) with a 1-block, 16-dim image encoder."""
    return build_surgical_sam(
        image_size=1024,
        variant="vit_b",
        encoder_depth=1,
        encoder_embed_dim=16,
        encoder_num_heads=1,
        encoder_global_attn_indexes=(0,),
    )


def fake_release(num_tokens: int = 2) -> dict:
    """Random tensors with the shapes of the released model_ckp.pth (checkpoint_formats manifest)."""
    manifest = read_manifest("surgicalsam_endovis2018.json")
    generator = torch.Generator().manual_seed(0)
    release = {
        sub: {k: torch.randn(shape, generator=generator) for k, shape in keys.items()}
        for sub, keys in manifest["state_dicts"].items()
    }
    if num_tokens != 2:
        for key, shapes in manifest["endovis2017_variant"]["differences"].items():
            sub, name = key.split("/")
            release[sub][name] = torch.randn(shapes[f"endovis2017_num_tokens_{num_tokens}"], generator=generator)
    return release


def test_released_checkpoint_layout_loads_strictly(full_size_model, tmp_path):
    release = fake_release()
    assert set(RELEASE_SUBDICTS) == set(release)
    load_surgicalsam_release(full_size_model, release)
    for sub, child in RELEASE_SUBDICTS.items():
        state = getattr(full_size_model, child).state_dict()
        assert list(state) == list(release[sub])  # same keys, same order
        assert all(torch.equal(state[k], v) for k, v in release[sub].items())
    bad = fake_release()
    bad["sam_decoder_state_dict"]["iou_token.weight"] = torch.zeros(2, 256)
    del bad["prototype_prompt_encoder_state_dict"]["dense_fc_1.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"mine.pth \[sam_decoder_state_dict\].*\n.*iou_token.weight"):
        load_surgicalsam_release(
            full_size_model, {**release, "sam_decoder_state_dict": bad["sam_decoder_state_dict"]}, source="mine.pth"
        )
    with pytest.raises(
        CheckpointMismatchError, match=r"prototype_prompt_encoder_state_dict.*\n.*missing keys.*dense_fc_1"
    ):
        load_surgicalsam_release(full_size_model, bad, source="mine.pth")
    path = tmp_path / "model_ckp.pth"
    torch.save(fake_release(num_tokens=4), path)  # EndoVis2017 fold file: 4 tokens per class
    model = build_surgical_sam(
        image_size=1024,
        variant="vit_b",
        encoder_depth=1,
        encoder_embed_dim=16,
        encoder_num_heads=1,
        encoder_global_attn_indexes=(0,),
        checkpoint=str(path),
        num_tokens=4,
    )
    assert model.class_prompt_encoder.pn_cls_embeddings[1].weight.shape == (4, 256)
    with pytest.raises(CheckpointMismatchError, match="sparse_fc_2.weight"):
        build_surgical_sam(
            image_size=1024,
            variant="vit_b",
            encoder_depth=1,
            encoder_embed_dim=16,
            encoder_num_heads=1,
            encoder_global_attn_indexes=(0,),
            checkpoint=str(path),
        )  # 2 tokens


def test_checkpoint_files_with_other_layouts_are_refused(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match=f"{path} is neither .* nor the released layout"):
        build_surgical_sam(checkpoint=str(path), device="meta")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'model.pt'} not found; train the bundle"):
        build_surgical_sam(checkpoint=str(tmp_path / "model.pt"), device="meta")


REAL_RELEASE = Path(
    os.environ.get("SURGICALSAM_CHECKPOINT", REPO / "bundles" / "surgical_sam" / "models" / "model_ckp.pth")
)


@pytest.mark.skipif(not REAL_RELEASE.is_file(), reason="released SurgicalSAM model_ckp.pth not present")
def test_real_released_checkpoint_loads(full_size_model):
    release = torch.load(REAL_RELEASE, map_location="cpu", weights_only=True)
    load_surgicalsam_release(full_size_model, release, source=str(REAL_RELEASE))


def test_default_vit_h_trains_exactly_the_released_parameters():
    manifest = read_manifest("surgicalsam_endovis2018.json")
    model = freeze_except(build_surgical_sam(device="meta"), SURGICAL_SAM_TRAINABLE)  # ViT-H at 1024, no memory used
    assert parameter_report(model)["trainable"] == manifest["num_trainable_params"]
    for sub, child in RELEASE_SUBDICTS.items():
        state = getattr(model, child).state_dict()
        assert {k: list(v.shape) for k, v in state.items()} == manifest["state_dicts"][sub]
    assert not any(
        p.requires_grad for n, p in model.named_parameters() if n.startswith(("image_encoder", "prompt_encoder."))
    )
