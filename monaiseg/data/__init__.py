"""Datalists, converters from official dataset layouts and synthetic data generators.

Names are imported lazily from their submodules, so ``python -m monaiseg.data.synthetic_ct``
runs without the submodule being imported twice.
"""

from importlib import import_module

_SUBMODULES = {
    "datalist_items": "datalist",
    "save_nifti": "datalist",
    "split_cases": "datalist",
    "write_datalist": "datalist",
    "CELL_TYPES": "cells",
    "prepare_lisc": "cells",
    "prepare_wbc": "cells",
    "write_cell_datalist": "cells",
    "make_cell_video": "synthetic_cells",
    "make_smear": "synthetic_cells",
    "make_synthetic_cell_dataset": "synthetic_cells",
    "frame_digits": "ctc",
    "read_ctc_frames": "ctc",
    "read_ctc_tracks": "ctc",
    "split_track_gaps": "ctc",
    "track_table": "ctc",
    "write_ctc_gt": "ctc",
    "write_ctc_result": "ctc",
    "deeplesion_npz_to_nifti": "medsam_npz",
    "load_deeplesion_npz": "medsam_npz",
    "challenge_items": "medsam_npz",
    "load_required_split": "required_split",
    "FLARE22_LABELS": "volume_datasets",
    "LITS_LABELS": "volume_datasets",
    "find_flare22_cases": "volume_datasets",
    "find_lits_cases": "volume_datasets",
    "find_msd_cases": "volume_datasets",
    "prepare_flare22": "volume_datasets",
    "prepare_lits": "volume_datasets",
    "prepare_msd": "volume_datasets",
    "ORGAN_CLASSES": "synthetic_2d",
    "SHAPE_CLASSES": "synthetic_2d",
    "make_shape_image": "synthetic_2d",
    "make_synthetic_2d": "synthetic_2d",
    "make_synthetic_2d_dataset": "synthetic_2d",
    "make_synthetic_classification_dataset": "synthetic_2d",
    "csv_items": "classification",
    "folder_items": "classification",
    "wbc_items": "classification",
    "image_items": "classification",
    "load_classification_datalist": "classification",
    "write_classification_datalist": "classification",
    "prepare_sa_med2d": "sa_med2d",
    "SYNTHETIC_CT_LABELS": "synthetic_ct",
    "make_synthetic_ct": "synthetic_ct",
    "make_synthetic_ct_dataset": "synthetic_ct",
    "SYNAPSE_LABELS": "synapse",
    "prepare_synapse": "synapse",
    "read_pair": "synapse",
    "write_slice_dataset": "synapse",
    "ACDC_LABELS": "acdc",
    "prepare_acdc": "acdc",
    "make_synthetic_organs_dataset": "synthetic_organs",
    "few_shot_subset": "few_shot",
    "ENDOVIS2017_CLASSES": "endovis",
    "ENDOVIS2018_CLASSES": "endovis",
    "check_class_map": "endovis",
    "convert_endovis2017": "endovis",
    "convert_endovis2018": "endovis",
    "make_synthetic_surgical_dataset": "synthetic_surgical",
    "make_synthetic_surgical_frame": "synthetic_surgical",
    "require_labels": "endovis",
    "collate_with_prompts": "collate",
    "EmbeddingCache": "embedding_cache",
    "encoder_identity": "embedding_cache",
    "ImageBank": "image_bank",
    "batch_items": "batch_inputs",
    "CaseDataset": "case_guard",
    "collate_cases": "case_guard",
}
__all__ = sorted(_SUBMODULES)


def __getattr__(name: str):
    if name not in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_SUBMODULES[name]}"), name)
