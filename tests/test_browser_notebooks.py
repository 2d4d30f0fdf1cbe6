"""Each notebook opened in JupyterLab and run in a real browser (Chromium), in smoke mode.

What nbval cannot see: a widget whose view fails in the browser ("Error displaying
widget") or never appears ("Loading widget..."), and JupyterLab's own way of running
the cells. A notebook fails on any error output, any cell left unrun, and any widget
view that does not render. One screenshot per notebook (and the server's log) is kept in
``test-artifacts/browser/``.

Needs Debian's ``chromium`` (``apt-get install chromium``); playwright (the ``test``
extra) drives that browser, so no browser download is needed. Without chromium the test
is skipped, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .helpers import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
NOTEBOOK_SECONDS = 300  # smoke mode; the slowest notebook takes about a minute on 2 loaded cores
WIDGET_SECONDS = 30  # after the last cell, for widget views to finish rendering
WIDGET_FAILURES = ("Error displaying widget", "Loading widget...")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# JupyterLab settings for the test: every cell laid out (no windowing), no news pop-up.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                      "checkForUpdates": False},
}

# Open PATH as a notebook, wait for its kernel, run every cell; resolves to "true" when
# all ran without error, "false" when a cell failed (JupyterLab stops there), "timeout".
RUN_ALL_CELLS = """async ({path, timeoutMs}) => {
  const app = window.jupyterapp;
  await app.restored;
  const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  app.shell.activateById(panel.id);
  await panel.context.ready;
  await panel.sessionContext.ready;
  if (!panel.sessionContext.session || !panel.sessionContext.session.kernel) {
    throw new Error('no kernel started for ' + path);
  }
  const timeout = new Promise(resolve => setTimeout(() => resolve('timeout'), timeoutMs));
  return String(await Promise.race([app.commands.execute('notebook:run-all-cells'), timeout]));
}"""
KERNEL_IDLE = "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"
NOTEBOOK_JSON = "() => window.jupyterapp.shell.currentWidget.context.model.toJSON()"
OUTPUT_TEXTS = "() => [...document.querySelectorAll('.jp-OutputArea-output')].map(node => node.textContent)"
# The notebook's scrolling element: its content height, or scrolled back to the top.
NOTEBOOK_SCROLLER = ("(() => { const notebook = window.jupyterapp.shell.currentWidget.content.node;"
                     " return notebook.querySelector('.jp-WindowedPanel-outer') || notebook; })()")
NOTEBOOK_HEIGHT = f"() => {NOTEBOOK_SCROLLER}.scrollHeight"
SCROLL_TO_TOP = f"() => {{ {NOTEBOOK_SCROLLER}.scrollTop = 0; }}"
SCREENSHOT_MAX_HEIGHT = 16000  # Chromium's limit for one capture is about 16,384 px
SHUT_DOWN_KERNEL = """async () => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (panel && panel.sessionContext) { await panel.sessionContext.shutdown(); }
}"""
WIDGETS_SETTLED = ("(failures) => ![...document.querySelectorAll('.jp-OutputArea-output')]"
                   ".some(node => failures.some(text => node.textContent.includes(text)))")


def required(what: str) -> None:
    """Skip for want of ``what`` on a developer's machine; fail in CI, which installs it."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: .ci/run installs it)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        required("the browser test needs Debian's chromium: apt-get install chromium")
    for module in ("playwright", "jupyterlab"):
        try:
            __import__(module)
        except ImportError:
            required(f"the browser test needs {module}: pip install -e '.[test]'")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lab_environment(home: Path) -> dict:
    """The server's (and so the kernels') environment: smoke mode, one thread, and
    Jupyter's config, data, settings and runtime folders of its own (nothing of the
    user's Jupyter set-up read or written; kernels and extensions come from this Python)."""
    env = dict(os.environ, TRANSINR_SMOKE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    env.pop("MPLBACKEND", None)  # the kernel's own inline backend, as for a user
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for name, values in LAB_SETTINGS.items():
        path = home / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return env


def wait_until_serving(url: str, server: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with status {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer {url} within {seconds:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory):
    """A headless JupyterLab on 127.0.0.1 serving a copy of notebooks/ (its autosave and
    the notebooks' own files stay out of the repository). Yields (base url, token)."""
    home = tmp_path_factory.mktemp("jupyter")
    folder = home / "notebooks"
    shutil.copytree(REPO_ROOT / "notebooks", folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    port, token = free_port(), secrets.token_hex(16)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "jupyterlab.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
             "--LabApp.expose_app_in_browser=True", "--ServerApp.terminals_enabled=False",
             "--allow-root"],  # CI runs as root
            cwd=folder, env=lab_environment(home), stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/api/status?token={token}", server, log)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def browser(chromium, lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def problems_in(notebook: dict, output_texts: list[str]) -> list[str]:
    """Every cell that did not run or printed an error, and every widget view that failed."""
    problems = []
    for number, cell in enumerate(notebook["cells"], start=1):
        if cell["cell_type"] != "code" or not cell["source"].strip():
            continue
        if cell.get("execution_count") is None:
            problems.append(f"cell {number} did not run")
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                trace = ANSI.sub("", "\n".join(output.get("traceback", [])))
                problems.append(f"cell {number} raised {output['ename']}: {output['evalue']}\n{trace[-2000:]}")
            elif output["output_type"] == "stream" and "Traceback" in "".join(output.get("text", "")):
                problems.append(f"cell {number} printed a traceback:\n{''.join(output['text'])[-2000:]}")
    for text in output_texts:
        problems += [f"a widget view shows {failure!r}: {text[:200]}" for failure in WIDGET_FAILURES
                     if failure in text]
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_jupyterlab_in_chromium(path, lab, browser):
    base, token = lab
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        page.goto(f"{base}/lab?reset&token={token}")
        page.wait_for_function("() => window.jupyterapp !== undefined", timeout=120_000)
        finished = page.evaluate(RUN_ALL_CELLS, {"path": path.name, "timeoutMs": NOTEBOOK_SECONDS * 1000})
        assert finished != "timeout", f"{path.name}: the cells did not finish within {NOTEBOOK_SECONDS} s"
        page.wait_for_function(KERNEL_IDLE, timeout=60_000)
        try:
            page.wait_for_function(WIDGETS_SETTLED, arg=list(WIDGET_FAILURES), timeout=WIDGET_SECONDS * 1000)
        except Exception:  # playwright's TimeoutError: the texts are reported below
            pass
        notebook, texts = page.evaluate(NOTEBOOK_JSON), page.evaluate(OUTPUT_TEXTS)
        # The whole notebook in one picture: a viewport as tall as its content.
        height = page.evaluate(NOTEBOOK_HEIGHT)
        page.set_viewport_size({"width": 1400, "height": min(SCREENSHOT_MAX_HEIGHT, height + 200)})
        page.evaluate(SCROLL_TO_TOP)  # JupyterLab left it scrolled to the last cell
        page.wait_for_timeout(1000)  # let the outputs lay themselves out again
        page.screenshot(path=str(ARTIFACTS / f"{path.stem}.png"))
    finally:
        (ARTIFACTS / f"{path.stem}.console.txt").write_text("\n".join(console))
        try:
            page.evaluate(SHUT_DOWN_KERNEL)  # five idle kernels would hold a GB of memory
        finally:
            page.close()
    problems = problems_in(notebook, texts)
    assert not problems, f"{path.name} in JupyterLab:\n" + "\n".join(problems)
    assert finished == "true", f"{path.name}: JupyterLab reported a failed cell (run-all returned {finished})"
    assert sum(output.get("output_type") in ("display_data", "execute_result")
               for cell in notebook["cells"] for output in cell.get("outputs", [])) > 0


def test_problems_are_found_in_what_the_browser_returns():
    """The checks themselves, on a notebook as JupyterLab returns it (no browser needed)."""
    notebook = {"cells": [
        {"cell_type": "markdown", "source": "# title"},
        {"cell_type": "code", "source": "x = 1", "execution_count": 1, "outputs": []},
        {"cell_type": "code", "source": "1 / 0", "execution_count": 2, "outputs": [
            {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
             "traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"]}]},
        {"cell_type": "code", "source": "y = 2", "execution_count": None, "outputs": []},
        {"cell_type": "code", "source": "", "execution_count": None, "outputs": []},
    ]}
    problems = problems_in(notebook, ["fine", "Error displaying widget: model not found", "Loading widget..."])
    assert problems[0].startswith("cell 3 raised ZeroDivisionError: division by zero\nZeroDivisionError:")
    assert problems[1:] == ["cell 4 did not run",
                            "a widget view shows 'Error displaying widget': Error displaying widget: model not found",
                            "a widget view shows 'Loading widget...': Loading widget..."]
    assert problems_in({"cells": notebook["cells"][:2]}, ["fine"]) == []
