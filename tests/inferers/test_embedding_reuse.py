"""EmbeddingReuse: the image encoder runs once per image (and weights version); the prompted
inferers give the same logits, byte for byte, with the embedding computed or reused; cached
embeddings are never written; another weights version never meets old entries."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from monaiseg.data.memory_cache import MemoryLRU
from monaiseg.inferers.box_carry import box_carry_volume
from monaiseg.inferers.embedding_reuse import EmbeddingReuse
from monaiseg.inferers.object_prompt import ObjectPromptInferer
from monaiseg.networks import build_sam2_segmenter, build_sam_segmenter

TINY_SAM = {"image_size": 64, "encoder_depth": 2, "encoder_embed_dim": 64, "encoder_num_heads": 2}


@pytest.fixture(scope="module")
def sam():
    torch.manual_seed(0)
    return build_sam_segmenter(**TINY_SAM).eval()


def counting(model):
    """Wrap model.image_encoder to count its calls."""
    calls = []
    encoder = model.image_encoder
    original = encoder.forward

    def forward(x):
        calls.append(x.shape[0])
        return original(x)

    encoder.forward = forward
    return calls, lambda: setattr(encoder, "forward", original)


def digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_object_prompts_encode_once_and_equal_the_plain_model(sam):
    image = torch.rand(1, 3, 40, 48)
    clicks = [[{"label": 1, "box": None, "points": [[10.0 + n, 12.0]], "point_labels": [1]}] for n in range(4)]
    plain = [ObjectPromptInferer()(image, sam, [json.dumps(c)]) for c in clicks]
    reuse = EmbeddingReuse(sam, MemoryLRU(64 << 20), identity="w1")
    calls, restore = counting(sam)
    try:
        with torch.no_grad():
            reused = [ObjectPromptInferer()(image, reuse, [json.dumps(c)]) for c in clicks]
    finally:
        restore()
    assert calls == [1]  # the first click encodes, the next three only decode
    assert all(torch.equal(a, b) for a, b in zip(plain, reused))
    summary = reuse.cache.summary()
    assert summary["misses"] == 1 and summary["hits"] == 3 and summary["entries"] == 1


def test_box_carry_slices_reuse_their_embeddings_and_cache_is_never_written(sam):
    volume = torch.rand(1, 32, 32, 5)
    from monaiseg.prompts import ObjectPrompt

    prompts = [ObjectPrompt(obj_id=1, frame=2, box=(4.0, 4.0, 20.0, 24.0))]
    plain = box_carry_volume(sam, volume, prompts)
    cache = MemoryLRU(64 << 20)
    reuse = EmbeddingReuse(sam, cache, identity="w1")
    first = box_carry_volume(reuse, volume, prompts)
    stored = [v for v, _ in cache._entries.values()]
    before = digest(t for v in stored for t in [v[0], *v[1]])
    calls, restore = counting(sam)
    try:
        second = box_carry_volume(reuse, volume, prompts)
    finally:
        restore()
    assert calls == [] and torch.equal(plain, first) and torch.equal(first, second)
    assert digest(t for v in stored for t in [v[0], *v[1]]) == before


def test_key_holds_weights_version_and_preprocessing(sam):
    cache = MemoryLRU(64 << 20)
    image = torch.rand(3, 16, 16)
    v1, v2 = EmbeddingReuse(sam, cache, identity="w1"), EmbeddingReuse(sam, cache, identity="w2")
    assert v1.key(image) != v2.key(image) and v1.key(image)[0] == "w1"
    assert v1.key(image) != v1.key(image + 1e-3)
    other = build_sam_segmenter(**TINY_SAM, pixel_mean=0.0, pixel_std=1.0).eval()
    assert EmbeddingReuse(other, cache, identity="w1").key(image) != v1.key(image)
    assert EmbeddingReuse(sam, cache).identity != EmbeddingReuse(other, cache).identity  # default: weights hash


@pytest.mark.slow
def test_sam2_prompted_masks_equal_with_reuse():
    torch.manual_seed(0)
    model = build_sam2_segmenter("tiny", image_size=64).eval()
    image = torch.rand(1, 3, 40, 40)
    boxes = torch.tensor([[4.0, 4.0, 20.0, 30.0], [10.0, 2.0, 36.0, 18.0]])
    with torch.no_grad():
        plain = [model.predict_masks(image, boxes=b)[0] for b in (boxes, boxes[:1])]
        reuse = EmbeddingReuse(model, MemoryLRU(64 << 20), identity="w")
        reused = [reuse(image, boxes=b) for b in (boxes, boxes[:1])]
    assert all(torch.equal(a, b) for a, b in zip(plain, reused))
    assert reuse.cache.summary()["misses"] == 1


def test_mask_prompt_reaches_the_decoder_with_the_clicks(sam):
    """A mask sent with the clicks is the decoder's mask prompt: the label changes with the mask,
    equals decoding with the mask logits directly, and a mask of another shape is refused."""
    from monaiseg.inferers.decoding import decode_prompts
    from monaiseg.inferers.object_prompt import MASK_LOGIT

    image = torch.rand(1, 3, 40, 48)
    mask = torch.zeros(40, 48)
    mask[5:30, 10:40] = 1
    click = {"label": 2, "box": None, "points": [[20.0, 15.0]], "point_labels": [1]}
    plain = ObjectPromptInferer()(image, sam, [json.dumps([click])])
    refined = ObjectPromptInferer()(image, sam, [json.dumps([click | {"mask": mask.int().tolist()}])])
    with torch.no_grad():
        embeddings, _ = sam.encode_images(image)
        logits = decode_prompts(
            sam,
            embeddings,
            (40, 48),
            torch.tensor([[[20.0, 15.0]]]),
            torch.tensor([[1]]),
            mask_inputs=((2 * mask - 1) * MASK_LOGIT)[None, None],
        )[0]
    expected = torch.where(logits[0, 0] > 0, 2.0, 0.0)
    assert torch.equal(refined[0, 0], expected) and not torch.equal(refined, plain)
    with pytest.raises(ValueError, match="mask prompt of shape"):
        ObjectPromptInferer()(image, sam, [json.dumps([click | {"mask": mask[:20].int().tolist()}])])
