"""README's two commands: the demo runs end to end (in smoke mode), and CI runs the test
command exactly as README gives it."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

from transinr.train import SMOKE_STEPS

from .helpers import REPO_ROOT, cli_environment

README = REPO_ROOT / "README.md"
CI_SCRIPT = REPO_ROOT / ".ci" / "run"


def readme_commands() -> list[str]:
    """The first two ```bash blocks of README: the demo command, then the test command."""
    blocks = re.findall(r"```bash\n(.*?)\n```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "README must start with the demo command and the test command"
    return [block.strip() for block in blocks[:2]]


def last_step(command: str) -> list[str]:
    """The last ``&&``-joined part of a shell command, split into words."""
    return shlex.split(command.split("&&")[-1])


def test_ci_runs_readmes_test_command_verbatim():
    test_command = readme_commands()[1]
    ci_lines = [line.strip() for line in CI_SCRIPT.read_text().splitlines()]
    assert test_command in ci_lines, f".ci/run must run README's test command as written: {test_command}"


def test_readme_commands_install_into_a_fresh_virtual_environment():
    for command in readme_commands():
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && "), command
        assert "pip install torch==" in command, command


def test_readmes_demo_command_runs_in_smoke_mode(tmp_path):
    words = last_step(readme_commands()[0])
    assert words[:3] == ["python3", "-m", "transinr"], words
    environment = dict(cli_environment(), TRANSINR_SMOKE="1")
    # The demo writes runs/<name> under the current folder: a fresh one here.
    result = subprocess.run([sys.executable, *words[1:]], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert f"emoji32_demo: {SMOKE_STEPS} steps" in result.stdout, result.stdout[-2000:]
    assert re.search(r"^held-out PSNR: \d+\.\d\d ± \d+\.\d\d dB .* over 351 signals$", result.stdout, flags=re.M), \
        result.stdout[-2000:]
    assert (tmp_path / "runs" / "emoji32_demo" / "samples.png").stat().st_size > 0
