"""scripts/real_data_report.py: the README's real-data table from the rows of the per-bundle report scripts.
The scripts' own runs are minutes long (their results are in the README); here the rows' checks and the table."""

from __future__ import annotations

import json
import runpy

import pytest
from conftest import REPO

SCRIPT = runpy.run_path(str(REPO / "scripts" / "real_data_report.py"))

ROWS = [
    {
        "bundle": "lite_medsam",
        "data": "polyps 14/6",
        "metric": "Dice",
        "before_kind": "zero-shot",
        "before": 0.9,
        "after": 0.925,
        "time_s": 125.4,
        "note": "lr 1e-5",
    },
    {
        "bundle": "unet_cells",
        "data": "WBC 70/15/15",
        "metric": "mIoU",
        "before_kind": "none",
        "before": None,
        "after": 0.8,
        "time_s": 59,
        "note": "",
    },
]


def test_every_report_script_is_found_and_takes_the_common_options():
    scripts = SCRIPT["report_scripts"]()
    assert list(scripts) == ["cells", "lite_medsam", "sam_v1_family"]  # every README row has its script
    assert all(p.name == f"real_data_{n}.py" for n, p in scripts.items())
    for path in scripts.values():
        text = path.read_text()
        assert all(option in text for option in ('"--data"', '"--out"', '"--quick"')), path.name
        assert runpy.run_path(str(path))["table"](ROWS) == SCRIPT["table"](ROWS), f"{path.name} prints another table"


def test_table_formats_before_after_and_wall_time():
    assert SCRIPT["table"](ROWS).splitlines() == [
        "| bundle | data | metric | before training | after training | wall time | note |",
        "|---|---|---|---|---|---|---|",
        "| lite_medsam | polyps 14/6 | Dice | 0.900 (zero-shot) | 0.925 | 2 min 05 s | lr 1e-5 |",
        "| unet_cells | WBC 70/15/15 | mIoU | - | 0.800 | 59 s |  |",
    ]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"after": "0.9"}, "row 0 needs 'after' as float"),
        ({"before_kind": "pretrained"}, "before_kind 'pretrained'"),
        ({"before": None}, "needs 'before' exactly when"),
        ({"note": None}, "row 0 needs 'note' as str"),
    ],
)
def test_a_bad_row_names_the_file_and_the_row(tmp_path, change, message):
    path = tmp_path / "lite_medsam.json"
    path.write_text(json.dumps([{**ROWS[0], **change}]))
    with pytest.raises(ValueError, match=message) as err:
        SCRIPT["load_rows"](path)
    assert str(path) in str(err.value)


def test_rows_are_reprinted_from_a_folder_without_running_anything(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps(ROWS[:1]))
    (tmp_path / "b.json").write_text(json.dumps(ROWS[1:]))
    SCRIPT["main"](["--rows", str(tmp_path)])
    assert capsys.readouterr().out.strip() == SCRIPT["table"](ROWS)
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(SystemExit, match="c.json: not JSON"):
        SCRIPT["main"](["--rows", str(tmp_path)])


def test_bundle_run_passes_none_as_null_and_a_failure_names_the_bundle_and_ends_its_log(tmp_path, monkeypatch):
    """The one runner every report script uses: the command `monai.bundle run` gets (config paths in the bundle's
    configs/, its logging.conf, None as "null"), its folder, and the error of a failed run (bundle, configs, exit
    code, the log's last lines)."""
    import subprocess
    from types import SimpleNamespace

    calls = []

    def fake_run(cmd, cwd, stdout, stderr, timeout):
        calls.append((cmd, cwd))
        stdout.write("line\n" * 30 + "Traceback: boom\n")
        return SimpleNamespace(returncode=calls[0][0].count("--fail") and 3)

    import monaiseg.utils.bundle_run

    fake = SimpleNamespace(run=fake_run, STDOUT=subprocess.STDOUT, CompletedProcess=subprocess.CompletedProcess)
    monkeypatch.setattr(monaiseg.utils.bundle_run, "subprocess", fake)
    bundle_run = SCRIPT["bundle_run"]
    seconds = bundle_run(
        "unet_cells", ["train.json", tmp_path / "extra.json"], {"a": None, "b": 2}, tmp_path / "ok.log"
    )
    cmd, cwd = calls[0]
    folder = REPO / "bundles" / "unet_cells"
    assert seconds >= 0 and cwd == folder
    assert cmd[1:5] == ["-m", "monai.bundle", "run", "--config_file"]
    assert cmd[5] == str([str(folder / "configs" / "train.json"), str(tmp_path / "extra.json")])
    assert cmd[6:] == ["--a", "null", "--b", "2", "--logging_file", str(folder / "configs" / "logging.conf")]

    calls.clear()
    with pytest.raises(RuntimeError, match=r"unet_cells: train.json failed \(exit 3\)") as error:
        bundle_run("unet_cells", ["train.json"], {"fail": 1}, tmp_path / "bad.log")
    assert str(tmp_path / "bad.log") in str(error.value) and str(error.value).endswith("Traceback: boom")
    assert str(error.value).count("line") == 19 + 1  # the last 20 lines of the log (and "last lines of")
