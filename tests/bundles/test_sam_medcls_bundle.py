"""SAM-MedCls: classifier shapes and attention modules, encoder-training settings, checkpoints,
bundle contract, train / evaluate / inference on synthetic shapes and the WBC sample, bad input."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED, error_chain
from PIL import Image

from monaiseg.networks import CheckpointMismatchError, build_sam_segmenter, parameter_report
from monaiseg.networks.attention import ChannelAttention, SpatialAttention
from monaiseg.networks.sam_classifier import SAMClassifier
from monaiseg.utils import bundle_run

BUNDLE = REPO / "bundles" / "sam_medcls"
CONFIGS = BUNDLE / "configs"
WBC = SHARED / "data" / "wbc_cellavision"
SHAPES = ["disc", "ring", "square"]
TINY = {"image_size": 64, "encoder_depth": 2, "encoder_embed_dim": 64, "encoder_num_heads": 2}


def tiny(num_classes=3, **kwargs) -> SAMClassifier:
    torch.manual_seed(0)
    return SAMClassifier(num_classes, **{**TINY, **kwargs})


def configs(*names: str) -> list[str]:
    return [str(CONFIGS / n) for n in [*names, "tiny.json"]]


def run_bundle(names, **overrides):
    bundle_run.run_bundle(configs(*names), in_process=True, **overrides)


# ---------------------------------------------------------------- network


def test_attention_modules_shapes_and_effect():
    x = torch.randn(2, 256, 16, 16)
    channel, spatial = ChannelAttention(256, reduction=16), SpatialAttention(7)
    a_c, a_s = channel.attention(x), spatial.attention(x)
    assert a_c.shape == (2, 256, 1, 1) and a_s.shape == (2, 1, 16, 16)
    assert ((a_c > 0) & (a_c < 1)).all() and ((a_s > 0) & (a_s < 1)).all()
    assert torch.allclose(channel(x), x * a_c) and torch.allclose(spatial(x), x * a_s)
    assert not torch.allclose(channel(x), x) and not torch.allclose(spatial(x), x)
    assert sum(p.numel() for p in channel.parameters()) == 256 * 16 + 16 + 16 * 256 + 256
    assert sum(p.numel() for p in spatial.parameters()) == 2 * 7 * 7 + 1
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SpatialAttention(4)


def test_classifier_outputs_and_attention_switch():
    net = tiny(4).eval()
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    assert net(torch.rand(1, 1, 50, 70)).shape == (1, 4)  # grey, any size: repeated and resized
    embedding = net.encode(torch.rand(2, 3, 64, 64))
    assert embedding.shape == (2, 256, 4, 4)  # S / 16
    assert net.pool(embedding).shape == (2, 512)
    plain = tiny(4, attention=False).eval()
    assert isinstance(plain.channel_attention, torch.nn.Identity)
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if "attention" not in k})
    image = torch.rand(1, 3, 64, 64)
    assert not torch.allclose(plain(image), net(image))  # the attention modules change the logits
    with pytest.raises(ValueError, match=r"\(B, 1\|3, H, W\)"):
        net(torch.rand(1, 4, 64, 64))


def test_encoder_training_settings():
    image, label = torch.rand(2, 3, 64, 64), torch.tensor([0, 2])
    trained = {}
    for mode in ("frozen", "adapters", "full"):
        net = tiny(encoder_training=mode)
        torch.nn.functional.cross_entropy(net(image), label).backward()
        trained[mode] = {n for n, p in net.named_parameters() if p.grad is not None}
        assert trained[mode] == {n for n, p in net.named_parameters() if p.requires_grad}
    head = trained["frozen"]
    assert all(n.startswith(("channel_attention.", "spatial_attention.", "head.")) for n in head)
    assert len(head) == 8  # 2 convs of the channel MLP, the spatial conv, the linear layer: weights + biases
    adapters = trained["adapters"] - head
    assert adapters and all(".Adapter." in n for n in adapters)
    assert {n.split(".")[2] for n in adapters} == {"0", "1"}  # every block's adapter
    assert trained["full"] == {n for n, _ in tiny().named_parameters()}
    with torch.enable_grad():
        assert not tiny(encoder_training="frozen").encode(image).requires_grad  # no autograd through the encoder
    with pytest.raises(ValueError, match="encoder_training must be one of"):
        tiny(encoder_training="lora")


def test_default_parameter_counts():
    """Default SAM-MedCls (SAM-Med2D ViT-B at 256, 5 WBC classes), built on the meta device."""
    counts = {
        m: parameter_report(SAMClassifier(5, encoder_training=m, device="meta")) for m in ("frozen", "adapters", "full")
    }
    assert {m: (c["total"], c["trainable"]) for m, c in counts.items()} == {
        "frozen": (267_188_344, 11_128),
        "adapters": (267_188_344, 180_515_704),  # SAM-Med2D's adapters: 180,504,576
        "full": (267_188_344, 267_188_344),
    }


def test_foundation_checkpoint_loads_and_sam_checkpoint_is_refused(tmp_path):
    med2d = build_sam_segmenter(
        encoder_adapter=True, encoder_depth=2, encoder_embed_dim=64, encoder_num_heads=2, image_size=64
    )
    torch.save({"model": med2d.state_dict()}, tmp_path / "med2d.pth")
    net = tiny(checkpoint=str(tmp_path / "med2d.pth"))
    assert all(torch.equal(v, med2d.image_encoder.state_dict()[k]) for k, v in net.image_encoder.state_dict().items())
    sam = build_sam_segmenter(
        encoder_adapter=False, encoder_depth=2, encoder_embed_dim=64, encoder_num_heads=2, image_size=64
    )
    torch.save({"model": sam.state_dict()}, tmp_path / "sam.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        tiny(checkpoint=str(tmp_path / "sam.pth"))
    message = str(info.value)
    assert "SAMClassifier (SAM-MedCls) needs a SAM-Med2D image encoder" in message
    assert "sam.pth" in message and "missing keys (12): image_encoder.blocks.0.Adapter.norm.weight" in message
    assert "The model is SAM-Med2D" in message
    with pytest.raises(FileNotFoundError, match=r"download_large_files.*extract_sam_med2d_weights"):
        tiny(checkpoint=str(tmp_path / "models" / "sam-med2d_b_weights.pth"))


# ---------------------------------------------------------------- contract


def test_bundle_specific_contract():
    """What this bundle declares beyond the shared zoo checks (scripts/verify_bundles.py)."""
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    train = json.loads((CONFIGS / "train.json").read_text())
    assert list(meta["network_data_format"]["outputs"]["pred"]["channel_def"].values()) == train["class_names"]


# ---------------------------------------------------------------- workflows


@pytest.fixture(scope="module")
def trained(synthetic_classification, tmp_path_factory):
    """One tiny training with MLflow tracking (in-process `monai.bundle run`); returns the bundle root used."""
    root = tmp_path_factory.mktemp("sam_medcls_root")
    run_bundle(
        ["train.json"],
        bundle_root=str(root),
        dataset_dir=str(synthetic_classification),
        class_names=SHAPES,
        tracking="mlflow",
    )
    return root


@pytest.mark.slow
def test_train_saves_model_and_tracks_mlflow(trained):
    from mlflow import MlflowClient

    content = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert set(content) == {"model"}
    tiny().load_state_dict(content["model"])  # strict: encoder + attention + head only
    assert not any(k.startswith(("prompt_encoder", "mask_decoder")) for k in content["model"])
    client = MlflowClient(tracking_uri=f"sqlite:///{trained / 'eval' / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    run = runs[0]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    assert 0.0 <= run.data.metrics["val_accuracy"] <= 1.0
    assert run.data.params["params_trainable"] == "10102"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model.pt" in artifacts and any(a.startswith("config_") for a in artifacts)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_evaluate_writes_report(trained, synthetic_classification):
    out = trained / "evaluation"
    run_bundle(
        ["train.json", "evaluate.json"],
        bundle_root=str(trained),
        dataset_dir=str(synthetic_classification),
        class_names=SHAPES,
        output_dir=str(out),
    )
    summary = json.loads((out / "summary.json").read_text())
    rows = read_csv(out / "predictions.csv")
    testing = json.loads((synthetic_classification / "datalist.json").read_text())["testing"]
    assert summary["num_images"] == len(rows) == len(testing) == 3
    assert summary["accuracy"] == pytest.approx(np.mean([r["label"] == r["predicted"] for r in rows]))
    assert sum(map(sum, summary["confusion_matrix"])) == 3 and summary["images_per_second"] > 0
    assert summary["parameters"]["total"] == 977_590
    assert [r["class"] for r in read_csv(out / "per_class.csv")] == SHAPES
    for row in rows:
        probs = [float(row[f"prob_{c}"]) for c in SHAPES]
        assert sum(probs) == pytest.approx(1, abs=1e-5) and row["predicted"] == SHAPES[int(np.argmax(probs))]
    assert (out / "confusion_matrix.png").stat().st_size > 0 and (out / "confusion_matrix.csv").is_file()


@pytest.mark.slow
def test_inference_folder_and_grey_image(trained, synthetic_classification, tmp_path):
    out = tmp_path / "out"
    run_bundle(
        ["inference.json"],
        bundle_root=str(trained),
        input_images=str(synthetic_classification / "ring"),
        class_names=SHAPES,
        output_dir=str(out),
    )
    records = json.loads((out / "predictions.json").read_text())
    assert [r["image"] for r in records] == [str(p) for p in sorted((synthetic_classification / "ring").glob("*.png"))]
    assert all(
        r["predicted"] in SHAPES and sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-5) for r in records
    )
    assert len(read_csv(out / "predictions.csv")) == 4
    grey = tmp_path / "grey.png"  # grey is accepted: repeated to 3 channels
    Image.open(synthetic_classification / "disc" / "img_000.png").convert("L").save(grey)
    run_bundle(
        ["inference.json"],
        bundle_root=str(trained),
        input_images=str(grey),
        class_names=SHAPES,
        output_dir=str(tmp_path / "grey_out"),
    )
    assert json.loads((tmp_path / "grey_out" / "predictions.json").read_text())[0]["image"] == str(grey)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, message",
    [
        ("rgba", r"rgba\.png: 4 channels, expected 1 or 3"),
        ("16bit", r"16bit\.png: pixel type int32 \(bit depth\) not supported, expected uint8"),
    ],
)
def test_bad_images_refused_without_outputs(trained, tmp_path, kind, message):
    rng = np.random.default_rng(0)
    array = (
        rng.integers(0, 255, (40, 50, 4), np.uint8)
        if kind == "rgba"
        else rng.integers(0, 60000, (40, 50)).astype(np.uint16)
    )
    Image.fromarray(array).save(tmp_path / f"{kind}.png")
    out = tmp_path / "out"
    with pytest.raises(Exception) as info:
        run_bundle(
            ["inference.json"],
            bundle_root=str(trained),
            input_images=str(tmp_path),
            class_names=SHAPES,
            output_dir=str(out),
        )
    assert re.search(message, error_chain(info.value))
    assert not out.exists() or not any(out.iterdir())


def test_empty_class_folder_refused(tmp_path):
    from monaiseg.data.classification import folder_items

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a" / "x.png")
    with pytest.raises(ValueError, match=r"b: class folder 'b' holds no image"):
        folder_items(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not WBC.is_dir(), reason="../shared/data/wbc_cellavision not present")
def test_wbc_real_check(tmp_path):
    """Tiny training + evaluation on the 100 real WBC images, 5 classes (the bundle's defaults)."""
    from monaiseg.data.classification import wbc_items, write_classification_datalist

    datalist = write_classification_datalist(tmp_path / "wbc.json", *wbc_items(WBC))
    common = {"bundle_root": str(tmp_path), "dataset_dir": str(WBC), "datalist": str(datalist)}
    run_bundle(["train.json"], **common)
    run_bundle(["train.json", "evaluate.json"], **common)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    testing = json.loads(datalist.read_text())["testing"]
    assert summary["num_images"] == len(testing) == 15
    assert list(summary["per_class"]) == ["neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil"]
    assert [summary["per_class"][c]["support"] for c in summary["per_class"]] == [5, 5, 2, 2, 1]
    assert not any(f.name.startswith(".tmp") for f in (tmp_path / "eval").iterdir())
