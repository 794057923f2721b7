"""pytest plugin (loaded by tests/conftest.py): lists the tests not marked `slow` that took longer than
`--slow-seconds` (default 5 s: setup, call and teardown together, so an expensive fixture counts against the
first test that uses it) in a section at the end of the run; `--strict-slow` makes such a test fail the run."""

from __future__ import annotations

import pytest

DEFAULT_SECONDS = 5.0


def pytest_addoption(parser):
    group = parser.getgroup("slow tests")
    group.addoption("--slow-seconds", type=float, default=DEFAULT_SECONDS, help="threshold of the slow-test list")
    group.addoption("--strict-slow", action="store_true", help="fail the run when an unmarked test is over it")


class SlowReport:
    def __init__(self, seconds: float, strict: bool):
        self.seconds, self.strict = seconds, strict
        self.durations: dict[str, float] = {}

    def pytest_runtest_logreport(self, report):
        if "slow" not in report.keywords:
            self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration

    def over(self) -> list[tuple[str, float]]:
        return sorted(((k, v) for k, v in self.durations.items() if v > self.seconds), key=lambda kv: -kv[1])

    def pytest_terminal_summary(self, terminalreporter):
        over = self.over()
        if over:
            title = f"{len(over)} tests not marked slow took over {self.seconds:g} s: mark them @pytest.mark.slow"
            terminalreporter.section(title, sep="-", yellow=True)
            for nodeid, seconds in over:
                terminalreporter.write_line(f"{seconds:8.1f} s  {nodeid}")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if self.strict and self.over() and exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config):
    option = config.getoption
    config.pluginmanager.register(SlowReport(option("--slow-seconds"), option("--strict-slow")), "slow_report_list")
