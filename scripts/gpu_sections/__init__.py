"""The sections of scripts/gpu_check.py, one module each (run through scripts/gpu_check.sh).

- `common`: the repository root, a CUDA-synchronised clock with peak GPU memory, Dice rounded for the report;
- `env`: torch, CUDA, the GPU, bf16 support;
- `lite_medsam`: LiteMedSAM images/s in float32, bf16 autocast, channels-last and compiled;
- `bundles`: every bundle's tiny config with `amp` off and on;
- `benchmarks`: the benchmark scripts in subprocesses (their options only checked in a dry run);
- `label_3d`: our MONAI Label 3D task against MONAI Label's own SAM2 task.

Each section returns the dict that `gpu_check.py` writes into the report under its name.
"""
