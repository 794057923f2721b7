"""segment-anything's mask decoder run by OpenVINO on CPU: `RuntimeMaskDecoder`, LiteMedSAM's decoder when its
encoder runs OpenVINO (`build_lite_medsam(decoder_runtime=...)`).

`ExportedDecoder` exports `MaskDecoder.predict_masks` once (TorchScript-based ONNX, opset 17) for one image
embedding and any number K of prompt rows of any N tokens (dynamic axes), caches its OpenVINO IR in the
encoders' `ModelCache` (key: the decoder's weights SHA-256 and the package versions) and runs it in f32
with torch's CPU thread count: one call for the K objects of a slice. Its logits equal PyTorch's to ~1e-5
(tests/networks/test_lite_medsam_decoder.py); on 2 cores it takes about a third of PyTorch's time.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import MaskDecoder
from torch import nn

from .encoder_runtime import EXPORT_FORMAT, ModelCache, compile_openvino, package_versions, weights_sha256
from .exported_module import ExportedModule

DECODER_RUNTIMES = ("eager", "openvino")


class _PredictMasks(nn.Module):
    """`decoder.predict_masks` as a module of 4 tensors, for the export."""

    def __init__(self, decoder: MaskDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(
        self, embedding: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
    ) -> Any:
        return MaskDecoder.predict_masks(self.decoder, embedding, image_pe, sparse, dense)


def _build_decoder_ir(decoder: MaskDecoder) -> Any:
    def build(folder: Path) -> None:
        import openvino as ov

        dim, side = decoder.transformer_dim, 64
        image = torch.zeros(1, dim, side, side)
        example = (image, image, torch.zeros(2, 2, dim), torch.zeros(2, dim, side, side))
        onnx = folder / "decoder.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            if not os.environ.get("MONAISEG_VERBOSE"):  # benign: outputs match eager (test_lite_medsam_decoder)
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                _PredictMasks(decoder),
                example,
                onnx,
                dynamo=False,
                opset_version=17,
                input_names=["embedding", "image_pe", "sparse", "dense"],
                output_names=["masks", "iou"],
                dynamic_axes={"embedding": {2: "h", 3: "w"}, "image_pe": {2: "h", 3: "w"}, "sparse": {0: "k", 1: "n"}}
                | {"dense": {0: "k", 2: "h", 3: "w"}},
            )
        ov.save_model(ov.Core().read_model(onnx), folder / "model.xml", compress_to_fp16=False)
        onnx.unlink()

    return build


class ExportedDecoder:
    """`decoder.predict_masks` compiled by OpenVINO (f32): (embedding (1, C, h, w), image_pe (1, C, h, w),
    sparse (K, N, C), dense (K, C, h, w)) -> (mask logits (K, 4, 4h, 4w), IoU (K, 4)); a frozen copy, one
    call at a time. `folder`: its cache entry; `loaded_from_cache`: OpenVINO imported the compiled blob."""

    def __init__(self, decoder: MaskDecoder, cache: ModelCache | None = None):
        key = {
            "format": EXPORT_FORMAT,
            "module": "segment_anything.MaskDecoder.predict_masks",
            "weights_sha256": weights_sha256(decoder),
            "model": "openvino-ir-f32-dynamic-k",
            "versions": package_versions(),
        }
        self.folder = (cache or ModelCache()).entry(key, _build_decoder_ir(decoder))
        config = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY"}
        compiled, self.loaded_from_cache = compile_openvino(self.folder, config | {"INFERENCE_PRECISION_HINT": "f32"})
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        arrays = [np.ascontiguousarray(x.detach().to(torch.float32).numpy()) for x in inputs]
        with self._lock:
            outputs = self._request.infer(dict(enumerate(arrays)))
            return torch.from_numpy(np.array(outputs[0])), torch.from_numpy(np.array(outputs[1]))


class RuntimeMaskDecoder(ExportedModule, MaskDecoder):
    """segment-anything's `MaskDecoder` (same parameters and keys) whose `predict_masks` runs an
    `ExportedDecoder` with `set_runtime("openvino")` for inference (eval mode, no autograd, float32 CPU
    tensors, one image embedding), exported at the first such call and again after `load_state_dict` or
    training mode; other calls, and a failed export (logged), run PyTorch."""

    @classmethod
    def of(cls, decoder: MaskDecoder) -> RuntimeMaskDecoder:
        """A `RuntimeMaskDecoder` of `decoder`'s sizes and weights."""
        new = cls(
            transformer_dim=decoder.transformer_dim,
            transformer=decoder.transformer,
            num_multimask_outputs=decoder.num_multimask_outputs,
            iou_head_depth=decoder.iou_prediction_head.num_layers,
            iou_head_hidden_dim=decoder.iou_prediction_head.layers[0].out_features,
        )
        new.load_state_dict(decoder.state_dict())
        return new

    def set_runtime(self, runtime: str) -> RuntimeMaskDecoder:
        """Run inference with `runtime` ("eager" or "openvino")."""
        if runtime not in DECODER_RUNTIMES:
            raise ValueError(f"decoder runtime {runtime!r} is unknown: choose one of {DECODER_RUNTIMES}")
        self.runtime = runtime
        self.drop_export()
        return self

    def _export(self) -> ExportedDecoder:
        return ExportedDecoder(self)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`MaskDecoder.predict_masks` (masks (K, 4, 4h, 4w), IoU (K, 4)), by the exported copy when it may."""
        inputs = (image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
        if (
            self.runtime == "eager"
            or torch.jit.is_tracing()
            or self.training
            or torch.is_grad_enabled()
            or image_embeddings.shape[0] != 1
            or any(x.device.type != "cpu" or x.dtype != torch.float32 for x in inputs)
        ):
            return super().predict_masks(*inputs)
        exported = self.ensure_exported()
        return super().predict_masks(*inputs) if exported is None else exported(*inputs)
