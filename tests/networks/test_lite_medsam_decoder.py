"""The mask decoder run by OpenVINO (`decoder_runtime.RuntimeMaskDecoder`, `build_lite_medsam(decoder_runtime=)`):
equal to PyTorch for any number of objects and prompt tokens, cached on disk and read back, eager while
training or after new weights, and the runtime names checked before anything is built."""

from __future__ import annotations

import pickle

import pytest
import torch
from segment_anything.modeling import MaskDecoder, TwoWayTransformer

from monaiseg.networks import build_lite_medsam
from monaiseg.networks import decoder_runtime as dr
from monaiseg.networks import encoder_runtime as er

DIM, SIDE = 32, 16


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(er.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny_decoder(seed: int = 0) -> dr.RuntimeMaskDecoder:
    torch.manual_seed(seed)
    transformer = TwoWayTransformer(depth=1, embedding_dim=DIM, mlp_dim=64, num_heads=2)
    decoder = MaskDecoder(transformer_dim=DIM, transformer=transformer, iou_head_depth=2, iou_head_hidden_dim=16)
    return dr.RuntimeMaskDecoder.of(decoder.eval()).eval()


def inputs(objects: int, tokens: int) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(objects * 10 + tokens)
    image = (torch.randn(1, DIM, SIDE, SIDE), torch.randn(1, DIM, SIDE, SIDE))
    return image + (torch.randn(objects, tokens, DIM), torch.randn(objects, DIM, SIDE, SIDE))


def test_openvino_decoder_equals_pytorch_and_is_cached():
    decoder, eager = tiny_decoder().set_runtime("openvino"), tiny_decoder()
    assert decoder.iou_prediction_head.num_layers == 2 and eager.runtime == "eager"
    with torch.no_grad():
        for objects, tokens, multimask in ((1, 2, False), (3, 2, True), (4, 5, False)):
            got = decoder(*inputs(objects, tokens), multimask_output=multimask)
            expected = eager(*inputs(objects, tokens), multimask_output=multimask)
            assert got[0].shape == (objects, 3 if multimask else 1, 4 * SIDE, 4 * SIDE)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    first = decoder._exported
    assert first is not None and not first.loaded_from_cache and (first.folder / "model.xml").is_file()
    again = dr.ExportedDecoder(tiny_decoder())  # same weights: the cached IR, the compiled blob imported
    assert again.folder == first.folder and again.loaded_from_cache
    assert dr.ExportedDecoder(tiny_decoder(seed=1)).folder != first.folder


def test_training_autograd_and_new_weights_run_pytorch():
    decoder = tiny_decoder().set_runtime("openvino")
    masks, _ = decoder(*inputs(2, 2), multimask_output=False)  # autograd on: PyTorch, differentiable
    assert masks.requires_grad and decoder._exported is None
    with torch.no_grad():
        decoder(*inputs(2, 2), multimask_output=False)
    assert decoder._exported is not None
    decoder.load_state_dict(tiny_decoder(seed=2).state_dict())  # new weights: the copy is dropped
    assert decoder._exported is None
    with torch.no_grad():
        torch.testing.assert_close(
            decoder(*inputs(2, 2), multimask_output=False),
            tiny_decoder(seed=2)(*inputs(2, 2), multimask_output=False),
            rtol=1e-4,
            atol=1e-4,
        )
    decoder.eval()
    with torch.no_grad():
        decoder(*inputs(2, 2), multimask_output=False)
    assert decoder._exported is not None
    copy = pickle.loads(pickle.dumps(decoder))  # pickles (a module-level hook) without its compiled copy
    assert copy._exported is None and copy.runtime == "openvino"
    torch.testing.assert_close(copy.state_dict(), decoder.state_dict())
    decoder.train()
    assert decoder._exported is None and decoder.training


def test_build_lite_medsam_decoder_runtime_names():
    model = build_lite_medsam(checkpoint=None, runtime="openvino")
    assert isinstance(model.mask_decoder, dr.RuntimeMaskDecoder) and model.mask_decoder.runtime == "openvino"
    assert build_lite_medsam(checkpoint=None).mask_decoder.runtime == "eager"  # auto follows the encoder
    pinned = build_lite_medsam(checkpoint=None, runtime="openvino", decoder_runtime="eager")
    assert pinned.mask_decoder.runtime == "eager"
    with pytest.raises(ValueError, match="decoder runtime 'onnx' is unknown"):
        build_lite_medsam(checkpoint=None, decoder_runtime="onnx")
    with pytest.raises(er.RuntimeUnavailableError, match="runs on CPU only"):
        build_lite_medsam(checkpoint=None, device="cuda", decoder_runtime="openvino")
