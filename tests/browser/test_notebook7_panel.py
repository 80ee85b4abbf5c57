"""The Burst panel in Notebook 7 (issue 16 item 10), in a real browser: `jupyter notebook` (not lab) runs a
slow %%burst job; View -> Left Sidebar -> Show Burst jobs opens the panel in the notebook view's left side
panel, which lists the job running with its progress and a Cancel; Cancel (after its confirmation) cancels
the job, the cell returns and every worker ends. The tree view's left side area has the panel too. Light
and dark screenshots.

The plugin once required ILabShell and so never activated in Notebook 7; it now uses the app's own shell.
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
from pathlib import Path

import pytest
from helpers import file_tail, free_port, pid_alive, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
NAME = "nb7-demo"
CELLS = [
    "%load_ext starburst_jupyter",
    f"%%burst --map x in range(40) --workers 2 --out r --name {NAME}\n"
    "import time\nprint('working on item', x, flush=True)\ntime.sleep(1.5)\nx",
]
PANEL = "#jp-left-stack .jp-BurstPanel"
ROW = f"{PANEL} .jp-BurstJob:has(.jp-BurstJob-name:text-is('{NAME}'))"
PROMPTS = "#main-panel .jp-CodeCell .jp-InputArea-prompt"
START_TIMEOUT = 120.0


class Notebook7:
    def __init__(self, url: str, token: str, root_dir: Path, starburst_home: Path, log_path: Path):
        self.url, self.token, self.root_dir, self.starburst_home, self.log_path = (
            url,
            token,
            root_dir,
            starburst_home,
            log_path,
        )

    def status(self) -> None:
        request = urllib.request.Request(f"{self.url}/api/status", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=2):
            pass


@pytest.fixture(scope="module")
def jupyter_notebook(tmp_path_factory: pytest.TempPathFactory):
    """`python -m notebook` (Notebook 7) set up as tests/browser/conftest.py sets up the lab: 127.0.0.1, a
    free port, a random token, fresh root/config/data/runtime dirs and STARBURST_HOME, its own process
    group (stopped by its PID: SIGTERM, then SIGKILL for the group, kernels included)."""
    if os.environ.get("STARBURST_REQUIRE_BROWSER") != "1":
        pytest.importorskip("notebook", reason="pip install -e '.[browser]'")
    base = tmp_path_factory.mktemp("notebook7")
    dirs = {n: base / n for n in ("root", "starburst-home", "config", "data", "runtime", "ipython")}
    for d in dirs.values():
        d.mkdir()
    token, port = secrets.token_hex(24), free_port()
    env = {
        **os.environ,
        "STARBURST_HOME": str(dirs["starburst-home"]),
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["config"] / "lab" / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["config"] / "lab" / "workspaces"),
        "IPYTHONDIR": str(dirs["ipython"]),
        "PYTHONUNBUFFERED": "1",
        # the kernels import this checkout, whatever is installed in the virtualenv
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    cmd = [
        sys.executable,
        "-m",
        "notebook",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={dirs['root']}",
        "--JupyterNotebookApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = base / "notebook.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, cwd=dirs["root"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    server = Notebook7(f"http://127.0.0.1:{port}", token, dirs["root"], dirs["starburst-home"], log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter notebook exited with {proc.returncode}:\n{file_tail(log_path, 60)}")
            try:
                server.status()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter notebook did not start:\n{file_tail(log_path, 60)}") from None
                time.sleep(0.25)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        try:  # its own session: pgid == pid; kernels and their workers are in it
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait_for_app(page) -> None:
    page.wait_for_selector("#main-panel", state="visible")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell")
    page.wait_for_selector("#menu-panel .lm-MenuBar-item", state="visible")


def set_theme(page, name: str, light: bool) -> None:
    page.evaluate("(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", name)
    page.wait_for_function("(light) => document.body.dataset.jpThemeLight === String(light)", arg=light)
    page.wait_for_timeout(500)  # the theme's CSS variables settle


def menu(page, top: str, *items: str) -> None:
    """Click through the menu bar: the top menu, then each (sub)menu item by its label."""
    page.locator("#menu-panel .lm-MenuBar-item", has_text=re.compile(f"^{re.escape(top)}$")).click()
    for label in items:
        item = page.locator(".lm-Menu:visible .lm-Menu-item:not(.lm-mod-disabled)").filter(
            has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(label)}$"))
        )
        item.last.click()


_KERNEL_READY_JS = """
async (name) => {
  const app = window.jupyterapp;
  const deadline = Date.now() + 120000;
  let panel = null;
  while (Date.now() < deadline && !panel) {
    const w = app.shell.currentWidget;
    if (w && w.context && w.context.path === name && w.sessionContext) { panel = w; }
    else { await new Promise(r => setTimeout(r, 100)); }
  }
  if (!panel) throw new Error('notebook ' + name + ' is not the current widget');
  await panel.context.ready;
  await panel.sessionContext.ready;
  while (Date.now() < deadline) {
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    if (kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle') {
      await kernel.info;
      return kernel.id;
    }
    await new Promise(r => setTimeout(r, 100));
  }
  throw new Error('kernel of ' + name + ' not idle in time');
}
"""


def test_burst_panel_in_notebook7(jupyter_notebook, browser_context, screenshot):
    import nbformat

    server = jupyter_notebook
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, str(server.root_dir / "nb7.ipynb"))
    page = browser_context.new_page()
    try:
        page.goto(f"{server.url}/notebooks/nb7.ipynb?token={server.token}", wait_until="domcontentloaded")
        wait_for_app(page)
        assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"  # Notebook 7, not lab
        page.wait_for_function(f"() => document.querySelectorAll('{PROMPTS}').length >= {len(CELLS)}")
        page.evaluate(_KERNEL_READY_JS, "nb7.ipynb")
        menu(page, "Run", "Run All Cells")

        # View -> Left Sidebar -> Show Burst jobs: the panel in the notebook view's left side panel.
        menu(page, "View", "Left Sidebar", "Show Burst jobs")
        panel = page.locator(PANEL)
        panel.wait_for(state="visible")
        assert page.get_by_role("region", name="Burst jobs").is_visible()
        row = page.locator(ROW).first
        row.wait_for(state="visible", timeout=60_000)
        sel = f"{PANEL} .jp-BurstJob[data-job-id='{row.get_attribute('data-job-id')}']"
        page.wait_for_function(f"() => document.querySelector(\"{sel}\")?.dataset.state === 'running'", timeout=60_000)
        row = page.locator(sel)
        bar = row.get_by_role("progressbar")
        assert bar.get_attribute("aria-valuemax") == "40"
        page.wait_for_function(  # it is live: progress advances while the cell runs
            f"() => +document.querySelector(\"{sel} .jp-BurstJob-progress\").getAttribute('aria-valuenow') >= 2",
            timeout=60_000,
        )
        assert row.locator(".jp-BurstJob-state").inner_text() == "running"  # the state the user reads
        row.get_by_role("button", name=f"{NAME}: running").click()  # expand: waves, workers, Cancel
        row.locator(".jp-BurstWorker").nth(1).wait_for(state="visible")
        cancel = row.get_by_role("button", name=f"Cancel job {NAME}")
        cancel.wait_for(state="visible")
        assert page.locator(PROMPTS).nth(1).inner_text().strip() == "[*]:"
        page.wait_for_function(  # both workers' log tails have reached the panel
            f'() => [...document.querySelectorAll("{sel} .jp-BurstWorker-log")]'
            ".filter(p => p.textContent.includes('working on item')).length === 2",
            timeout=60_000,
        )
        screenshot(page, "light-running")
        set_theme(page, "JupyterLab Dark", light=False)
        screenshot(page, "dark-running")

        # Cancel from the panel: a confirmation, then the job ends and the cell returns. Once the job list
        # says the job ended, its details are held back: the row must not offer Cancel for an ended job
        # while its details are read again (it did, for one poll: a flaky test_sidebar).
        job_id = row.get_attribute("data-job-id")
        ended, held = [], []

        def on_list(route):
            response = route.fetch()
            ended.extend(j for j in response.json()["jobs"] if j["id"] == job_id and not j["active"])
            route.fulfill(response=response)

        def on_detail(route):
            if ended:
                held.append(route)  # answered below, once the row has been looked at
            else:
                route.continue_()

        page.route(re.compile(r"/starburst/api/jobs(\?.*)?$"), on_list)
        page.route(re.compile(rf"/starburst/api/jobs/{job_id}(\?.*)?$"), on_detail)
        cancel.click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(state="visible")
        assert "Cancel burst job?" in dialog.inner_text() and NAME in dialog.inner_text()
        dialog.get_by_role("button", name="Cancel job").click()
        page.wait_for_function(
            f"() => document.querySelector(\"{sel}\")?.dataset.state === 'cancelled'", timeout=60_000
        )
        assert row.locator(".jp-BurstJob-cancel").count() == 0
        for _ in range(100):  # the panel's read of the details is the one held back
            if held:
                break
            page.wait_for_timeout(100)
        assert held and row.locator(".jp-BurstJob-cancel").count() == 0
        for route in held:
            route.continue_()
        page.unroute_all()
        row.locator(".jp-BurstJob-message").wait_for(state="visible")  # details read again: why it ended
        page.wait_for_function(
            f"() => /^\\[\\d+\\]:$/.test(document.querySelectorAll('{PROMPTS}')[1].textContent.trim())",
            timeout=60_000,
        )
        assert row.locator(".jp-BurstJob-cancel").count() == 0  # nothing left to cancel
        records = [json.loads(p.read_text()) for p in server.starburst_home.glob("jobs/*/record.json")]
        record = max((r for r in records if r["name"] == NAME), key=lambda r: r["created"])
        assert record["state"] == "cancelled" and record["done"] < 40, record
        assert "Burst sidebar" in record["message"], record["message"]
        pids = [w["pid"] for w in record["workers"].values() if w.get("pid")]
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=15)  # every worker is gone
        screenshot(page, "dark-cancelled")
        set_theme(page, "JupyterLab Light", light=True)
        screenshot(page, "light-cancelled")

        # The tree view (the file browser) has a left side area too: the panel is there, with the job,
        # opened here by the "Burst: show jobs" command (the app shell's activateById).
        page.goto(f"{server.url}/tree?token={server.token}", wait_until="domcontentloaded")
        wait_for_app(page)
        assert not page.locator(PANEL).is_visible()
        page.evaluate("() => window.jupyterapp.commands.execute('starburst:open')")
        page.locator(f"{PANEL} .jp-BurstJob[data-state='cancelled']").first.wait_for(state="visible")
        screenshot(page, "light-tree")
        page.locator("#jp-left-stack .jp-SidePanel-collapse").click()  # Notebook's own close button
        panel.wait_for(state="hidden")
    finally:
        page.close()
