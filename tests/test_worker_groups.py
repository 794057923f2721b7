"""The groups tests/worker_groups.py sends to xdist workers: costly shared fixtures stay on one worker."""

from __future__ import annotations

from worker_groups import CONFORMANCE, group_of

BUNDLES = {"medsam", "medsam2", "sam_med2d"}


def test_a_file_is_a_group_and_files_sharing_a_fixture_share_one():
    assert group_of("tests/data/test_video_io.py::test_mp4[1]", BUNDLES) == "tests/data/test_video_io.py"
    assert group_of("tests/label/test_label_server.py::test_info", BUNDLES) == "label_server"
    assert group_of("tests/label/test_label_real_weights.py::test_2d[ellipse]", BUNDLES) == "label_server"
    assert group_of("tests/bundles/test_browser_views.py::test_mlflow_ui", BUNDLES) == "conformance-medsam"


def test_the_conformance_tests_of_one_bundle_are_a_group():
    assert group_of(f"{CONFORMANCE}::test_resume_after_sigkill[medsam2]", BUNDLES) == "conformance-medsam2"
    assert group_of(f"{CONFORMANCE}::test_model_zoo_checks[sam_med2d-files]", BUNDLES) == "conformance-sam_med2d"
    assert group_of(f"{CONFORMANCE}::test_model_zoo_checks[medsam-json_format]", BUNDLES) == "conformance-medsam"
    assert group_of(f"{CONFORMANCE}::test_verify_bundles_reports_a_broken_bundle", BUNDLES) == CONFORMANCE
