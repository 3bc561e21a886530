"""Every shell command and Python snippet in README.md's code blocks runs, in README order, in one
scratch folder (so ``outputs/...`` lands there); only the paths in ``PATHS`` are substituted.

A command that cannot run here carries ``[not run in tests: why]`` in the README itself and is
skipped under its own name. An identical command that appeared earlier is not run twice: its test
passes when the first run passed (the README repeats the first-hour commands in "Training").
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
MARKER = re.compile(r"\[not run in tests: ([^\]]+)\]")
SHELL = {"bash", "sh", "shell"}
TIMEOUT = 1200  # seconds per snippet; the smoke training takes a few minutes on 2 loaded cores


@dataclass(frozen=True)
class Snippet:
    """One shell command (continuation lines joined) or one whole Python block of the README."""

    kind: str  # "shell" | "python"
    text: str
    line: int  # README line where it starts
    skip: str | None  # the README's reason when marked

    @property
    def name(self) -> str:
        code = " ".join(line for line in self.text.splitlines() if not line.lstrip().startswith("#"))
        words = re.sub(r"[^A-Za-z0-9_.]+", "-", " ".join(code.split()[:4])).strip("-")
        return f"L{self.line}-{self.kind}-{words}"[:70]


def readme_snippets(text: str) -> list[Snippet]:
    """The shell commands and Python blocks of ``text`` (a README), in order."""
    snippets, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence or fence.group(1) not in SHELL | {"python"}:
            i += 1
            continue
        start, body = i + 2, []
        i += 1
        while not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if fence.group(1) == "python":
            reason = MARKER.search("\n".join(body))
            snippets.append(Snippet("python", "\n".join(body), start, reason.group(1) if reason else None))
            continue
        command, first = [], start
        for offset, line in enumerate(body):
            if not command and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if not command:
                first = start + offset
            command.append(line)
            if not line.rstrip().endswith("\\"):
                joined = "\n".join(command)
                reason = MARKER.search(joined)
                snippets.append(Snippet("shell", joined, first, reason.group(1) if reason else None))
                command = []
    return snippets


SNIPPETS = readme_snippets(README.read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(scope="module")
def paths() -> dict[str, str]:
    """README placeholders -> real paths: the images to predict on are the built-in smoke validation set."""
    from deim.data.fashion import fashion_splits

    return {"path/to/images/": str(fashion_splits("smoke")["val"][0]) + "/"}


RESULTS: dict[tuple[str, str], bool] = {}


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # deim, python of this venv
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))  # this checkout's deim
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    return env


def test_the_readme_has_commands_and_snippets():
    kinds = {s.kind for s in SNIPPETS}
    assert kinds == {"shell", "python"} and len(SNIPPETS) >= 10
    assert any("deim train" in s.text and s.skip is None for s in SNIPPETS)
    assert any("Detector" in s.text and s.skip is None for s in SNIPPETS)


@pytest.mark.slow
@pytest.mark.parametrize("snippet", [pytest.param(s, id=s.name) for s in SNIPPETS])
def test_readme_snippet_runs(snippet: Snippet, workdir: Path, paths: dict[str, str]):
    if snippet.skip:
        pytest.skip(f"README marks it: not run in tests: {snippet.skip}")
    key = (snippet.kind, " ".join(snippet.text.split()))
    if key in RESULTS:  # the same command earlier in the README
        assert RESULTS[key], f"the same command failed earlier in the README: {snippet.text}"
        return
    text = snippet.text
    for placeholder, real in paths.items():
        text = text.replace(placeholder, real)
    argv = ["bash", "-c", text] if snippet.kind == "shell" else [sys.executable, "-c", text]
    proc = subprocess.run(argv, cwd=workdir, env=_environment(), capture_output=True, text=True, timeout=TIMEOUT)
    RESULTS[key] = proc.returncode == 0
    assert proc.returncode == 0, (f"README line {snippet.line} failed ({proc.returncode}):\n{text}\n"
                                  f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}")


def test_parser_joins_continuations_and_reads_markers():
    text = "x\n```bash\n# a comment\ndeim train --a \\\n   --b   # [not run in tests: GPU]\n\ndeim eval\n```\n" \
           "```python\nimport deim\n```\n```text\nnot code\n```\n"
    got = readme_snippets(text)
    assert [(s.kind, s.line, s.skip) for s in got] == [("shell", 4, "GPU"), ("shell", 7, None), ("python", 10, None)]
    assert got[0].text == "deim train --a \\\n   --b   # [not run in tests: GPU]"
