"""monaiseg.utils.run_bundle / bundle_command: one way to run `monai.bundle run`."""

from __future__ import annotations

import ast
import json
import sys

import pytest

from monaiseg.utils.bundle_run import bundle_command, run_bundle


def fake_bundle(tmp_path):
    """A bundle whose workflow writes its `value` (and its type) to `out`, and fails when `fail` is true."""
    configs = tmp_path / "bundle" / "configs"
    configs.mkdir(parents=True)
    config = {
        "value": 1,
        "fail": False,
        "out": str(tmp_path / "out.json"),
        "run": [
            "$json.dump([repr(@value), type(@value).__name__], open(@out, 'w'))",
            "$logging.getLogger('fake_bundle').info('value is ' + repr(@value))",
            "$(_ for _ in ()).throw(ValueError('asked to fail')) if @fail else None",
        ],
        "imports": ["$import json", "$import logging"],
    }
    (configs / "run.json").write_text(json.dumps(config))
    (configs / "logging.conf").write_text(
        "[loggers]\nkeys=root\n[handlers]\nkeys=console\n[formatters]\nkeys=plain\n"
        "[logger_root]\nlevel=INFO\nhandlers=console\n[handler_console]\nclass=StreamHandler\nformatter=plain\n"
        "args=(sys.stdout,)\n[formatter_plain]\nformat=%(message)s\n"
    )
    return configs / "run.json"


def test_command_lists_configs_then_overrides_none_as_null_and_the_bundles_logging_conf(tmp_path):
    config = fake_bundle(tmp_path)
    command = bundle_command([config], value=None, max_epochs=3, name="a b", flags=[1, 2], root=tmp_path)
    assert command[:5] == [sys.executable, "-m", "monai.bundle", "run", "--config_file"]
    assert ast.literal_eval(command[5]) == [str(config)]
    pairs = dict(zip(command[6::2], command[7::2]))
    assert pairs == {
        "--value": "null",
        "--max_epochs": "3",
        "--name": "a b",
        "--flags": "[1, 2]",
        "--root": str(tmp_path),
        "--logging_file": str(config.parent / "logging.conf"),
    }
    own = bundle_command(config, logging_file="mine.conf")
    assert own[-2:] == ["--logging_file", "mine.conf"] and own.count("--logging_file") == 1


def test_in_process_passes_overrides_and_none_as_null(tmp_path):
    config = fake_bundle(tmp_path)
    assert run_bundle(config, in_process=True, value=7) is None
    assert json.loads((tmp_path / "out.json").read_text()) == ["7", "int"]
    run_bundle(config, in_process=True, value=None)
    assert json.loads((tmp_path / "out.json").read_text()) == ["'null'", "str"]
    run_bundle(config, in_process=True, value=tmp_path)
    assert json.loads((tmp_path / "out.json").read_text()) == [repr(str(tmp_path)), "str"]


def test_in_process_output_goes_to_the_log_and_no_handler_is_left_on_it(tmp_path):
    import logging

    config = fake_bundle(tmp_path)
    log = tmp_path / "run.log"
    log.write_text("earlier run\n")
    run_bundle(config, in_process=True, log=log, value=3)
    run_bundle(config, in_process=True, log=log, value=4)
    text = log.read_text()
    assert text.startswith("earlier run\n") and "value is 3\nvalue is 4\n" in text, text  # appended, both runs
    assert json.loads((tmp_path / "out.json").read_text()) == ["4", "int"]
    named = [x for x in logging.Logger.manager.loggerDict.values() if isinstance(x, logging.Logger)]
    streams = [getattr(h, "stream", None) for x in [logging.getLogger(), *named] for h in x.handlers]
    assert not any(getattr(s, "name", None) == str(log) for s in streams)
    logging.getLogger("fake_bundle").warning("a later message")  # no handler writes to the closed file
    assert "a later message" not in log.read_text()
    with pytest.raises(Exception, match="asked to fail"):
        run_bundle(config, in_process=True, log=log, fail=True, value=5)
    assert log.read_text().endswith("value is 5\n")  # the handlers are detached after a failure too


def test_in_process_error_propagates(tmp_path):
    config = fake_bundle(tmp_path)
    with pytest.raises(Exception, match="asked to fail"):
        run_bundle(config, in_process=True, fail=True)


def test_no_config_is_refused():
    with pytest.raises(ValueError, match="at least one config"):
        bundle_command([])


@pytest.mark.slow
def test_subprocess_values_arrive_as_in_process_and_its_output_is_kept(tmp_path):
    config = fake_bundle(tmp_path)
    log = tmp_path / "run.log"
    assert run_bundle(config, value=None, log=log).returncode == 0
    assert json.loads((tmp_path / "out.json").read_text()) == ["'null'", "str"]
    failed = run_bundle(config, fail=True, value=[1, 2], check=False)
    assert failed.returncode == 1 and "asked to fail" in failed.stderr + failed.stdout
    assert json.loads((tmp_path / "out.json").read_text()) == ["[1, 2]", "list"]


def test_a_failed_subprocess_names_the_configs_and_ends_with_its_output(tmp_path, monkeypatch):
    import subprocess

    config = fake_bundle(tmp_path)
    calls = []

    def fake_run(command, **kwargs):
        calls.append((command, kwargs["cwd"]))
        return subprocess.CompletedProcess(command, 3, stdout="a line\n", stderr="Traceback: asked to fail\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match=r"(?s)\[run.json\] failed with exit code 3:.*asked to fail"):
        run_bundle(config, fail=True)
    assert calls == [(bundle_command(config, fail=True), config.parents[1])]
