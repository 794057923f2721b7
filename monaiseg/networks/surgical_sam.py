"""SurgicalSAM (docs/methods.md#surgicalsam-and-ibr): class-promptable surgical instrument segmentation.

`SurgicalSAM` is a `SAMSegmenter` (keys `image_encoder.*`, `prompt_encoder.*`, `mask_decoder.*`,
so the official SAM files load strictly) plus `prototypes.*` (`LearnablePrototypes`) and
`class_prompt_encoder.*` (`PrototypePromptEncoder`). The SAM image encoder (ViT-H by default, any
size by config) and the SAM prompt encoder (only its positional encoding is used) are frozen;
prototypes, class prompt encoder and mask decoder are trained.

A class is the prompt: `decode_classes(embeddings, class_ids)` decodes every queried class of
an image with its own dense / sparse prompt embeddings (single-mask output, predicted IoU as the
mask quality). `forward(images)` queries all classes and returns (B, C + 1, H, W) logits with a
fixed zero background logit (prompt-free, for `verify_net_in_out` and MONAI Label); the bundle's
inferer (`monaiseg.inferers.class_prompt.ClassPromptInferer`) composes class maps as upstream.

The released `model_ckp.pth` (EndoVis2018 / 2017) holds three sub-dicts, loaded strictly by
`load_surgicalsam_release`: `prototype_prompt_encoder_state_dict` -> `class_prompt_encoder`,
`sam_decoder_state_dict` -> `mask_decoder`, `prototypes_state_dict` -> `prototypes`; the frozen
image and prompt encoders come from SAM ViT-H (`foundation_checkpoint`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder

from monaiseg.networks.checkpoint import load_state_dict_strict
from monaiseg.networks.prototype_prompt import LearnablePrototypes, PrototypePromptEncoder
from monaiseg.networks.sam2_segmenter import IMAGENET_MEAN, IMAGENET_STD
from monaiseg.networks.sam_builder import build_sam_segmenter
from monaiseg.networks.sam_segmenter import SAMSegmenter
from monaiseg.utils.batch import plain_tensor
from monaiseg.utils.config import none_if_null, silenced

logger = logging.getLogger(__name__)

# sub-dict of the released model_ckp.pth -> child module of SurgicalSAM
RELEASE_SUBDICTS = {
    "prototype_prompt_encoder_state_dict": "class_prompt_encoder",
    "sam_decoder_state_dict": "mask_decoder",
    "prototypes_state_dict": "prototypes",
}
# what is trained (freeze_except patterns); pn_cls_embeddings stay frozen
SURGICAL_SAM_TRAINABLE = [
    "prototypes",
    "class_prompt_encoder.dense_fc_*",
    "class_prompt_encoder.sparse_fc_*",
    "mask_decoder",
]


class SurgicalSAM(SAMSegmenter):
    """SAM with a prototype-based class prompt encoder (module docstring)."""

    def __init__(
        self,
        image_encoder: ImageEncoderViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        prototypes: LearnablePrototypes,
        class_prompt_encoder: PrototypePromptEncoder,
        pixel_mean=IMAGENET_MEAN,
        pixel_std=IMAGENET_STD,
    ):
        super().__init__(image_encoder, prompt_encoder, mask_decoder, pixel_mean, pixel_std)
        size = tuple(prompt_encoder.image_embedding_size)
        if size != (class_prompt_encoder.size, class_prompt_encoder.size):
            raise ValueError(
                f"class prompt encoder built for {class_prompt_encoder.size}^2 embeddings, SAM makes {size}"
            )
        self.prototypes = prototypes
        self.class_prompt_encoder = class_prompt_encoder

    @property
    def num_classes(self) -> int:
        return self.prototypes.class_embeddings.num_embeddings

    def decode_classes(self, embeddings: torch.Tensor, class_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image embeddings (B, 256, h, w) and queried class ids (B, K) in 1..C -> low-res mask
        logits (B, K, 4h, 4w) and predicted IoU (B, K)."""
        batch, queries = class_ids.shape
        if batch * queries == 0:
            height, width = embeddings.shape[-2:]
            return embeddings.new_zeros(batch, queries, 4 * height, 4 * width), embeddings.new_zeros(batch, queries)
        dense, sparse = self.class_prompt_encoder(embeddings, self.prototypes(), class_ids)
        low_res, iou = self.decode(embeddings, sparse.flatten(0, 1), dense.flatten(0, 1))  # (B * K, 1, 4h, 4w)
        return low_res.view(batch, queries, *low_res.shape[-2:]), iou.view(batch, queries)

    def all_classes(self, batch: int, device: torch.device) -> torch.Tensor:
        """Class ids (B, C): every class queried for every image."""
        return torch.arange(1, self.num_classes + 1, device=device).expand(batch, -1)

    def forward(  # type: ignore[override]  # class queries, not SAMSegmenter's prompts: a different call
        self,
        images: torch.Tensor | None = None,
        class_ids: torch.Tensor | None = None,
        embeddings: torch.Tensor | None = None,
        size: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Mask logits at `size` (default: the images' H x W, else the encoder's S x S).

        images (B, 1|3, H, W) in [0, 1], or precomputed `embeddings` (B, 256, h, w) (frozen
        encoder, e.g. from `EmbeddingCache`). `class_ids` (B, K): logits (B, K, H, W) of those
        classes; None: all classes, (B, C + 1, H, W) with a zero background logit at channel 0.
        """
        images, class_ids, embeddings = plain_tensor(images), plain_tensor(class_ids), plain_tensor(embeddings)
        if embeddings is None:
            if images is None:
                raise ValueError("SurgicalSAM needs images or precomputed image embeddings")
            embeddings = self.encode_images(images)[0]
        if size is None:
            size = images.shape[-2:] if images is not None else (self.image_size, self.image_size)
        queries = self.all_classes(embeddings.shape[0], embeddings.device) if class_ids is None else class_ids
        low_res, _ = self.decode_classes(embeddings, queries.long())
        logits = F.interpolate(low_res, size=tuple(size), mode="bilinear", align_corners=False)
        if class_ids is None:
            logits = torch.cat([logits.new_zeros(logits.shape[0], 1, *logits.shape[-2:]), logits], dim=1)
        return logits


def read_surgicalsam_file(path: str | Path) -> dict:
    """The content of a SurgicalSAM file (weights_only=True): ours `{'model': state_dict}` or the
    released `{'prototype_prompt_encoder_state_dict', 'sam_decoder_state_dict', 'prototypes_state_dict'}`."""
    path = Path(path)
    if not path.is_file():
        hint = (
            "; train the bundle first (configs/train.json)"
            if path.name == "model.pt"
            else ("; the released weights are model_ckp.pth of wenxi-yue/SurgicalSAM (ckp/surgical_sam/...)")
        )
        raise FileNotFoundError(f"SurgicalSAM checkpoint {path} not found{hint}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"SurgicalSAM checkpoint {path} cannot be read as a weights-only torch file: {exc}") from exc
    if not isinstance(content, dict) or not ("model" in content or set(RELEASE_SUBDICTS) <= set(content)):
        found = list(content)[:5] if isinstance(content, dict) else type(content).__name__
        raise ValueError(
            f"SurgicalSAM checkpoint {path} is neither {{'model': state_dict}} nor the released layout "
            f"with {sorted(RELEASE_SUBDICTS)} (found {found})"
        )
    return content


def load_surgicalsam_release(
    model: SurgicalSAM, release: Mapping[str, Mapping[str, torch.Tensor]], source: str = "model_ckp.pth"
) -> SurgicalSAM:
    """Load the three sub-dicts of a released `model_ckp.pth` strictly into their modules
    (`RELEASE_SUBDICTS`); `CheckpointMismatchError` names `source`, the sub-dict and every mismatch."""
    missing = [k for k in RELEASE_SUBDICTS if k not in release]
    if missing:
        raise ValueError(f"SurgicalSAM release {source} lacks the sub-dicts {missing}")
    for key, child in RELEASE_SUBDICTS.items():
        load_state_dict_strict(getattr(model, child), release[key], source=f"{source} [{key}]")
    return model


def build_surgical_sam(
    num_classes: int = 7,
    variant: str = "vit_h",
    image_size: int = 1024,
    foundation_checkpoint: str | Path | None = None,
    checkpoint: str | Path | None = None,
    num_tokens: int = 2,
    hidden_dim_dense: int = 128,
    hidden_dim_sparse: int = 128,
    pixel_mean: float | Sequence[float] = IMAGENET_MEAN,
    pixel_std: float | Sequence[float] = IMAGENET_STD,
    encoder_depth: int | None = None,
    encoder_embed_dim: int | None = None,
    encoder_num_heads: int | None = None,
    encoder_global_attn_indexes: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
) -> SurgicalSAM:
    """A `SurgicalSAM` for `num_classes` classes on SAM `variant` at `image_size` (upstream: vit_h, 1024).

    `foundation_checkpoint`: the SAM file (sam_vit_h_4b8939.pth) for the frozen encoders and the
    initial decoder; None: random weights, with a warning. `checkpoint`: ours (`{'model': ...}`,
    everything, loaded strictly; the foundation file is then not read) or a released
    `model_ckp.pth` (loaded over the foundation weights). `num_tokens`: sparse tokens per class
    (EndoVis2018 2, EndoVis2017 4). `encoder_*`: a smaller ViT (tiny test models).
    The positive / negative class embeddings start from SAM's point embeddings.
    """
    checkpoint, foundation = none_if_null(checkpoint), none_if_null(foundation_checkpoint)
    content = read_surgicalsam_file(checkpoint) if checkpoint is not None else None
    ours = content is not None and "model" in content
    with silenced(build_sam_segmenter.__module__, ours):  # no misleading random-init warning
        sam = build_sam_segmenter(
            variant,
            image_size,
            checkpoint=None if ours else foundation,
            device=device,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
            encoder_depth=encoder_depth,
            encoder_embed_dim=encoder_embed_dim,
            encoder_num_heads=encoder_num_heads,
            encoder_global_attn_indexes=encoder_global_attn_indexes,
        )
    dim, size = sam.prompt_encoder.embed_dim, sam.prompt_encoder.image_embedding_size[0]
    with torch.device(device):
        prototypes = LearnablePrototypes(num_classes, dim)
        encoder = PrototypePromptEncoder(dim, hidden_dim_dense, hidden_dim_sparse, size, num_tokens)
    encoder.init_from_sam(sam.prompt_encoder)
    model = SurgicalSAM(
        sam.image_encoder, sam.prompt_encoder, sam.mask_decoder, prototypes, encoder, pixel_mean, pixel_std
    )
    if ours and content is not None:  # (ours implies content)
        load_state_dict_strict(model, content["model"], source=str(checkpoint))
    elif content is not None:
        if foundation is None:
            logger.warning(
                "SurgicalSAM release %s loaded over a RANDOM SAM image encoder (foundation_checkpoint is "
                "null): its predictions are meaningless",
                checkpoint,
            )
        load_surgicalsam_release(model, content, source=str(checkpoint))
    return model.to(device).eval()
