"""The copy-paste commands the docs mark as tested run as written.

A ```bash block in README.md, docs/*.md or bundles/*/docs/README.md is tested when the line before it is
`<!-- tested -->` or `<!-- tested: OPTIONS -->`, OPTIONS a comma-separated list of `slow` (run in the slow
test), `root` (needs a root shell: apt-get), `needs PROGRAM` (skipped, with the reason, when PROGRAM is not
on PATH) and `port N` (skipped when something already listens on N). Every marked block: no `sudo`, and an
`apt-get install` only after an `apt-get update` of the same block. A document's marked blocks of one kind
(quick or slow) run in order in one `bash -euo pipefail` from the repository root."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO

MARKER = re.compile(r"^<!--\s*tested(?::\s*(?P<options>[^>]*?))?\s*-->\s*$")


@dataclass
class Block:
    doc: Path
    line: int
    code: str
    slow: bool = False
    root: bool = False
    needs: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)


def marked_blocks(doc: Path) -> list[Block]:
    """The tested ```bash blocks of `doc`, in order, with their marker's options."""
    lines, blocks = doc.read_text(encoding="utf-8").splitlines(), []
    for i, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if not marker:
            continue
        if i + 1 >= len(lines) or lines[i + 1].strip() != "```bash":
            raise AssertionError(f"{doc.relative_to(REPO)}:{i + 1}: a tested marker must stand right above ```bash")
        end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
        block = Block(doc, i + 3, "\n".join(lines[i + 2 : end]))
        for option in filter(None, (o.strip() for o in (marker["options"] or "").split(","))):
            if option in ("slow", "root"):
                setattr(block, option, True)
            elif option.startswith("needs "):
                block.needs.append(option.removeprefix("needs ").strip())
            elif option.startswith("port "):
                block.ports.append(int(option.removeprefix("port ")))
            else:
                raise AssertionError(f"{doc.relative_to(REPO)}:{i + 1}: unknown tested option {option!r}")
        blocks.append(block)
    return blocks


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("bundles/*/docs/README.md"))]
BLOCKS = {doc: marked_blocks(doc) for doc in DOCS if doc.is_file()}


def command_lines(code: str) -> list[str]:
    """The block's commands, comments dropped (a `#` after whitespace starts one)."""
    return [re.sub(r"(^|\s)#.*$", "", line).strip() for line in code.splitlines() if line.strip()]


def test_marked_blocks_need_no_sudo_and_update_before_install():
    assert BLOCKS[REPO / "README.md"], "README.md marks no tested command"
    assert BLOCKS[REPO / "docs" / "clinical_path.md"], "docs/clinical_path.md marks no tested command"
    problems = []
    for blocks in BLOCKS.values():
        for b in blocks:
            where = f"{b.doc.relative_to(REPO)}:{b.line}"
            commands = command_lines(b.code)
            if any(re.search(r"(^|[;&|]\s*)sudo\b", c) for c in commands):
                problems.append(f"{where}: uses sudo")
            installs = [i for i, c in enumerate(commands) if re.search(r"\bapt-get\b.*\binstall\b", c)]
            updates = [i for i, c in enumerate(commands) if re.search(r"\bapt-get\b.*\bupdate\b", c)]
            if installs and not (updates and updates[0] <= installs[0]):
                problems.append(f"{where}: apt-get install without an apt-get update before it")
            if installs and not b.root:
                problems.append(f"{where}: apt-get without the `root` option")
    assert not problems, problems


def test_markers_and_their_options_are_read():
    doc = REPO / "docs" / "clinical_path.md"
    kinds = [(b.slow, b.root, b.needs, b.ports) for b in BLOCKS[doc]]
    assert kinds[0] == (True, True, [], [])  # apt-get: slow, root
    assert (False, False, ["Orthanc"], [8042]) in kinds  # the throwaway Orthanc and its stop


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def run_blocks(blocks: list[Block]) -> None:
    for b in blocks:
        if b.root and os.geteuid() != 0:
            pytest.skip(f"{b.doc.name}:{b.line} is written for a root shell")
        for program in b.needs:
            if not shutil.which(program):
                pytest.skip(f"{b.doc.name}:{b.line} needs {program}, not installed")
        for port in b.ports:
            if port_in_use(port):
                pytest.skip(f"{b.doc.name}:{b.line} uses port {port}, taken by another process")
    script = "\n".join(f"# {b.doc.name}:{b.line}\n{b.code}" for b in blocks)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: anything it leaves running is stopped below
    )
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):  # background servers a failed block did not stop
            os.killpg(proc.pid, signal.SIGTERM)
    assert proc.returncode == 0, f"{blocks[0].doc.name}: the tested commands failed:\n{script}\n---\n{out[-3000:]}"


QUICK = [(doc, [b for b in blocks if not b.slow]) for doc, blocks in BLOCKS.items()]
SLOW = [(doc, [b for b in blocks if b.slow]) for doc, blocks in BLOCKS.items()]


@pytest.mark.slow  # a subprocess (CONTRIBUTING), though about a second each
@pytest.mark.parametrize(
    "doc, blocks", [q for q in QUICK if q[1]], ids=[str(d.relative_to(REPO)) for d, b in QUICK if b]
)
def test_quick_commands_run(doc, blocks):
    run_blocks(blocks)


@pytest.mark.slow
@pytest.mark.parametrize("doc, blocks", [s for s in SLOW if s[1]], ids=[str(d.relative_to(REPO)) for d, b in SLOW if b])
def test_slow_commands_run(doc, blocks):
    run_blocks(blocks)
