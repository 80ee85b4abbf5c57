"""Real-browser fixtures: a private JupyterLab server driven by Debian's Chromium through Playwright.

- `jupyter_lab` (session): `python -m jupyterlab` from this virtualenv on 127.0.0.1, a free port, a fixed
  random token, a fresh root dir, fresh Jupyter config/data/runtime dirs and its own STARBURST_HOME.
  Stopped by its PID at the end (SIGTERM, then SIGKILL), kernels included (its own process group).
- `browser_context` (session): Chromium at /usr/bin/chromium (never `playwright install`), headless,
  with a new empty user-data-dir.
- `lab_page`: a fresh tab on `/lab?token=...`, with the JupyterLab shell loaded.
- `open_and_run_notebook` (fixture): `open_and_run_notebook(page, name, cells)` writes a notebook, opens it,
  waits for its kernel, runs Run -> Run All Cells and waits until every cell has finished.
- `screenshot`: `screenshot(page, "step")` saves artifacts/screenshots/<test>-<step>.png.

Without Playwright or Chromium the tests skip, unless STARBURST_REQUIRE_BROWSER=1 (set by .ci/run),
where they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import file_tail, free_port

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("STARBURST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAB_START_TIMEOUT = 120.0  # s; a cold lab start on 2 busy cores takes ~5-15 s
KERNEL_TIMEOUT_MS = 120_000
RUN_TIMEOUT_MS = 180_000
UI_TIMEOUT_MS = 60_000


def _missing(reason: str) -> None:
    if os.environ.get("STARBURST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (STARBURST_REQUIRE_BROWSER=1) but {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


# ----- the JupyterLab server ------------------------------------------------------------------
@dataclass
class Lab:
    url: str  # http://127.0.0.1:PORT
    token: str
    root_dir: Path  # the server's root: notebooks written here show up in the lab
    starburst_home: Path  # STARBURST_HOME of the server and its kernels
    pid: int
    log_path: Path
    trace_path: Path  # STARBURST_DEBUG_LOG of the server's kernels: what starburst code in them traced

    def trace_tail(self, lines: int = 80) -> str:
        return file_tail(self.trace_path, lines) if self.trace_path.exists() else "(no kernel trace written)"

    def api(self, path: str, timeout: float = 5.0) -> dict:
        request = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def log_tail(self, lines: int = 60) -> str:
        return file_tail(self.log_path, lines)


def _stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the server (it shuts its kernels down), then SIGKILL it and whatever of its group is left."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    # The server ran in its own session (start_new_session): its pgid is its pid. Kernels and anything
    # they started without a new session of their own are in that group; we started all of them.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("STARBURST_REQUIRE_BROWSER") != "1":
        pytest.importorskip("jupyterlab", reason="pip install -e '.[browser]'")
    base = tmp_path_factory.mktemp("lab")
    root_dir, home = base / "root", base / "starburst-home"
    config_dir, data_dir, runtime_dir, ipython_dir = (base / n for n in ("config", "data", "runtime", "ipython"))
    for d in (root_dir, home, config_dir, data_dir, runtime_dir, ipython_dir):
        d.mkdir()
    # No "Jupyter news" toast over the lower right corner of the screenshots.
    settings = config_dir / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))

    token, port = secrets.token_hex(24), free_port()
    env = {
        **os.environ,
        "STARBURST_HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_DATA_DIR": str(data_dir),
        "JUPYTER_RUNTIME_DIR": str(runtime_dir),
        "JUPYTERLAB_SETTINGS_DIR": str(config_dir / "lab" / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(config_dir / "lab" / "workspaces"),
        "IPYTHONDIR": str(ipython_dir),
        "PYTHONUNBUFFERED": "1",
        # the kernels import this checkout, whatever is installed in the virtualenv
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "STARBURST_DEBUG_LOG": os.environ.get("STARBURST_DEBUG_LOG") or str(base / "kernel-trace.log"),
    }
    log_path = base / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--LabApp.expose_app_in_browser=True",
        "--ServerApp.disable_check_xsrf=False",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=root_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root_dir, home, proc.pid, log_path, Path(env["STARBURST_DEBUG_LOG"]))
    try:
        deadline = time.monotonic() + LAB_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{lab.log_tail()}")
            try:
                lab.api("/api/status", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"JupyterLab did not answer /api/status in {LAB_START_TIMEOUT:.0f} s:\n{lab.log_tail()}"
                    ) from None
                time.sleep(0.25)
        yield lab
    finally:
        _stop(proc)


# ----- the browser ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("STARBURST_REQUIRE_BROWSER") != "1":
        pytest.importorskip("playwright.sync_api", reason="pip install -e '.[browser]'")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # new, empty user-data-dir
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
            timeout=UI_TIMEOUT_MS,
            env={**os.environ, "TZ": "UTC"},
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()  # closes Chromium; the `with` then stops Playwright's driver


@pytest.fixture
def lab_page(jupyter_lab: Lab, browser_context):
    page = browser_context.new_page()
    throttle = os.environ.get("STARBURST_BROWSER_CPU_THROTTLE")  # e.g. 6: the page runs as on a loaded CI machine
    if throttle:
        browser_context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": float(throttle)})
    page.goto(f"{jupyter_lab.url}/lab?token={jupyter_lab.token}", wait_until="domcontentloaded")
    _wait_for_shell(page)
    try:
        yield page
    finally:
        page.close()


def _wait_for_shell(page) -> None:
    page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=UI_TIMEOUT_MS)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=UI_TIMEOUT_MS)
    # The app is started once its menu bar is up: commands (and the Run menu) exist from then on.
    page.wait_for_selector("#jp-menu-panel .lm-MenuBar-item", state="visible", timeout=UI_TIMEOUT_MS)


# ----- notebooks ------------------------------------------------------------------------------
def write_notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, str(path))


_KERNEL_READY_JS = (
    """
async (name) => {
  const app = window.jupyterapp;
  const deadline = Date.now() + %d;
  let panel = null;
  while (Date.now() < deadline) {
    const w = app.shell.currentWidget;
    if (w && w.context && w.context.path === name && w.sessionContext) { panel = w; break; }
    await new Promise(r => setTimeout(r, 100));
  }
  if (!panel) throw new Error('notebook ' + name + ' is not the current widget');
  await panel.context.ready;
  await panel.sessionContext.ready;
  while (Date.now() < deadline) {
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    if (kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle') {
      await kernel.info;  // the kernel_info reply arrived: the kernel handles requests now
      return kernel.id;
    }
    await new Promise(r => setTimeout(r, 100));
  }
  throw new Error('kernel of ' + name + ' not idle in time');
}
"""
    % KERNEL_TIMEOUT_MS
)

_PROMPT_DONE = re.compile(r"^\[\d+\]:$")


def run_notebook_in_lab(
    page, lab: Lab, name: str, cells: list[str], *, timeout_ms: int = RUN_TIMEOUT_MS, before_run=None
) -> list[str]:
    """Write `name` (cells = code sources) into the lab's root, open it, wait for its kernel to be ready,
    Run -> Run All Cells, and wait until every cell shows an execution count and the kernel is idle.

    `before_run(page)`, if given, is called once the kernel is ready, just before running (a screenshot).
    Returns the text of each cell's output area.
    """
    code_cells = start_notebook_in_lab(page, lab, name, cells, before_run=before_run)
    return wait_for_notebook(page, code_cells, len(cells), timeout_ms)


def start_notebook_in_lab(page, lab: Lab, name: str, cells: list[str], *, before_run=None):
    """Write and open `name`, wait for its kernel, click Run -> Run All; returns the code cells' locator."""
    write_notebook(lab.root_dir / name, cells)
    page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}", wait_until="domcontentloaded")
    _wait_for_shell(page)
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    notebook.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    code_cells = notebook.locator(".jp-CodeCell")
    page.wait_for_function(
        "([n]) => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell').length >= n",
        arg=[len(cells)],
        timeout=UI_TIMEOUT_MS,
    )
    # The kernel can show "idle" before its session is ready and then swallow the first execution:
    # wait on the session itself, then check every prompt afterwards.
    page.evaluate(_KERNEL_READY_JS, name)
    if before_run is not None:
        before_run(page)

    # Run menu -> "Run All Cells" (command runmenu:run-all; its label is "Run All" with no notebook).
    page.locator("#jp-menu-panel .lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator("#jp-mainmenu-run .lm-Menu-item[data-command='runmenu:run-all']:not(.lm-mod-disabled)").click()
    return code_cells


def wait_for_notebook(page, code_cells, n_cells: int, timeout_ms: int = RUN_TIMEOUT_MS) -> list[str]:
    """Wait until every cell has run and the kernel is idle; returns each cell's output text."""
    cells = range(n_cells)
    # Every cell: an execution count (not "[*]:" nor "[ ]:"), then the kernel idle.
    page.wait_for_function(
        """([n]) => {
          const prompts = [...document.querySelectorAll(
            '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')];
          return prompts.length >= n && prompts.every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()));
        }""",
        arg=[n_cells],
        timeout=timeout_ms,
    )
    page.wait_for_function(
        """() => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
                   return k && k.status === 'idle'; }""",
        timeout=timeout_ms,
    )
    prompts = [code_cells.nth(i).locator(".jp-InputArea-prompt").inner_text().strip() for i in cells]
    assert all(_PROMPT_DONE.match(p) for p in prompts), prompts
    return [code_cells.nth(i).locator(".jp-OutputArea").inner_text() for i in cells]


@pytest.fixture
def start_notebook(jupyter_lab: Lab):
    """start_notebook(page, name, cells) -> code cells locator; the cells are running when it returns."""
    return lambda page, name, cells, **kw: start_notebook_in_lab(page, jupyter_lab, name, cells, **kw)


@pytest.fixture
def notebook_done():
    """notebook_done(page, code_cells, n) -> outputs, once every cell ran and the kernel is idle."""
    return wait_for_notebook


@pytest.fixture
def open_and_run_notebook(jupyter_lab: Lab):
    """The helper, bound to this session's lab: open_and_run_notebook(page, name, cells) -> output texts."""
    return lambda page, name, cells, **kw: run_notebook_in_lab(page, jupyter_lab, name, cells, **kw)


# ----- screenshots ----------------------------------------------------------------------------
def save_screenshot(page, test: str, step: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{test}-{step}")
    path = SCREENSHOTS / f"{safe}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


@pytest.fixture
def screenshot(request: pytest.FixtureRequest):
    """screenshot(page, "step") -> artifacts/screenshots/<test name>-<step>.png"""
    return lambda page, step: save_screenshot(page, request.node.name, step)
