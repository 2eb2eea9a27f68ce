"""README.md's code blocks work as pasted: every ```python block runs on its own, and every command line of
scripts/run.py in a ```bash block composes (its keys and group options exist; nothing is run)."""
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from conftest import CONF

from quadflow.cli.app import register_configs
from quadflow.cli.errors import CommandLineError, check_command_line

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(text: str, language: str) -> list[str]:
    """The bodies of the fenced blocks of ``language`` in a Markdown ``text``."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def run_lines(text: str) -> list[list[str]]:
    """The arguments of every scripts/run.py command in the bash blocks of ``text`` (``make run ARGS="..."``
    included)."""
    out = []
    for block in blocks(text, "bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            runs = [i for i, w in enumerate(words) if w.endswith("scripts/run.py")]
            if runs:
                out.append(words[runs[0] + 1:])
            elif words[:2] == ["make", "run"]:
                out.append([a for w in words[2:] if w.startswith("ARGS=") for a in w[len("ARGS="):].split()])
    return out


def run_python(block: str) -> str:
    """Run ``block`` in a namespace of its own; returns what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    return printed.getvalue()


def check_run(args: list[str]) -> None:
    register_configs()
    check_command_line(args, str(CONF), "config")


TEXT = README.read_text()


@pytest.mark.parametrize("block", blocks(TEXT, "python"), ids=lambda b: b.splitlines()[0][:40])
def test_every_python_block_runs_as_pasted(block):
    assert run_python(block).strip()  # each block shows its result


@pytest.mark.parametrize("args", run_lines(TEXT), ids=lambda a: " ".join(a)[:60] or "defaults")
def test_every_run_command_composes(args):
    check_run(args)


def test_the_readme_has_the_blocks_these_tests_check():
    assert len(blocks(TEXT, "python")) >= 2 and len(run_lines(TEXT)) >= 10
    assert ["--cfg", "job", "--resolve"] in run_lines(TEXT)  # prints the resolved config


def test_a_broken_block_or_command_would_fail():
    broken = ("```python\nfrom quadflow import QuadraticNetwork\nQuadraticNetwork(d=4, m=2)(x)\n```\n"
              "```bash\nmake run ARGS=\"problem.kapa=1\"\n.venv/bin/python scripts/run.py optim=adamw  # typo\n```\n")
    with pytest.raises(NameError):
        run_python(blocks(broken, "python")[0])
    lines = run_lines(broken)
    assert lines == [["problem.kapa=1"], ["optim=adamw"]]
    for args in lines:
        with pytest.raises(CommandLineError):
            check_run(args)
