"""`PrepareBatch` callables: what a trainer or evaluator feeds the network for each kind of batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from monai.engines.utils import PrepareBatch

from monaiseg.data.embedding_cache import EmbeddingCache
from monaiseg.data.image_bank import ImageBank
from monaiseg.inferers.class_prompt import image_embeddings
from monaiseg.networks.prototype_prompt import class_embeddings_from_masks
from monaiseg.networks.sam_segmenter import SAMSegmenter
from monaiseg.utils.batch import image_names, plain_tensor, unwrap_model


class PrepareInteractiveBatch(PrepareBatch):
    """Batch -> (image, label, (), {"labels": label, "names": image file names}) for `InteractiveInferer`."""

    def __call__(self, batchdata, device=None, non_blocking: bool = False, **kwargs):
        image = batchdata["image"].to(device=device, non_blocking=non_blocking)
        label = batchdata["label"].to(device=device, non_blocking=non_blocking)
        return image, label, (), {"labels": label, "names": image_names(batchdata)}


class PrepareClassPromptBatch:
    """`prepare_batch` for `SupervisedTrainer`: frames -> (frame, class) rows (module docstring).

    Returns inputs None, target {"masks" (R, 1, S, S), "class_embeddings" (R, 256), "class_ids"
    (R,)} for `ClassPromptLoss`, and the network's keyword arguments.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        num_classes: int,
        cache: EmbeddingCache | None = None,
        image_bank: ImageBank | None = None,
    ):
        self.network, self.num_classes, self.cache, self.image_bank = network, num_classes, cache, image_bank

    def __call__(self, batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs):
        images = plain_tensor(batchdata["image"]).to(device=device, non_blocking=non_blocking)
        labels = plain_tensor(batchdata["label"]).to(device=device, non_blocking=non_blocking).long()
        labels = labels[:, 0] if labels.ndim == 4 else labels  # (B, S, S)
        embeddings = image_embeddings(cast(SAMSegmenter, unwrap_model(self.network)), images, self.cache)
        class_embeddings, present = class_embeddings_from_masks(embeddings, labels, self.num_classes)
        frame, index = present.nonzero(as_tuple=True)
        class_ids = index + 1
        rows = {
            "embeddings": embeddings[frame],
            "class_ids": class_ids,
            "masks": (labels[frame] == class_ids[:, None, None])[:, None].to(embeddings.dtype),
            "class_embeddings": class_embeddings[frame, index],
        }
        if self.image_bank is not None:
            rows = self.image_bank.append_to(rows)
        target = {k: rows[k] for k in ("masks", "class_embeddings", "class_ids")}
        network_kwargs = {
            "embeddings": rows["embeddings"],
            "class_ids": rows["class_ids"][:, None],
            "size": tuple(labels.shape[-2:]),
        }
        return None, target, (), network_kwargs


class PrepareCellClipBatch(PrepareBatch):
    """One video clip per batch -> the network's multi-object clip call.

    batch["image"] (1, C, H, W, T), batch["label"] (1, K, H, W, T) (one binary channel per tracked
    cell, from `RandCellTracksd`), batch["box"] (1, K, 4) on frame 0. Returns
    (clip (1, C, H, W, T), targets (K, 1, H, W, T), (), {"boxes": (K, 4), "return_memory": ...}):
    the clip is encoded once and the K cells are tracked together (`SAM2Segmenter.forward_clip`).
    """

    def __init__(self, return_memory: bool = True):
        self.return_memory = return_memory

    def __call__(self, batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs):
        image, label, box = batchdata["image"], batchdata["label"], batchdata["box"]
        if image.shape[0] != 1:
            raise ValueError(
                f"cell clips are trained one video per batch (batch_size 1), got a batch of {image.shape[0]}"
            )
        targets = label[0].unsqueeze(1)  # (K, 1, H, W, T)
        move = {"device": device, "non_blocking": non_blocking}
        return (
            image.to(**move),
            targets.to(**move),
            (),
            {"boxes": box[0].to(**move), "return_memory": self.return_memory},
        )


class PrepareOptionalBoxes(PrepareBatch):
    """Batch -> (image, label or None, (), {"boxes": ..., "density": ...}) for `InstancePromptInferer`,
    passing only the prompts the batch has (inference with or without a boxes file)."""

    def __init__(self, box_key: str = "boxes", density_key: str = "density"):
        self.box_key, self.density_key = box_key, density_key

    def __call__(self, batchdata, device=None, non_blocking: bool = False, **kwargs):
        move = {"device": device, "non_blocking": non_blocking}
        prompts = {
            name: batchdata[key].to(**move)
            for name, key in (("boxes", self.box_key), ("density", self.density_key))
            if key in batchdata
        }
        label = batchdata.get("label")
        label = label.to(**move) if isinstance(label, torch.Tensor) else None  # a path when not loaded
        return batchdata["image"].to(**move), label, (), prompts
