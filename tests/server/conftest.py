"""A real `jupyter server` on 127.0.0.1 for the REST API tests (one per test module).

The server gets a fixed random token, fresh Jupyter config/data/runtime dirs and its own
STARBURST_HOME; nothing enables the extension but what `pip install` put in the environment's
jupyter_server_config.d. `api(method, path, ...)` sends a request and returns (status, JSON body).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import file_tail, free_port

START_TIMEOUT = 90.0


@dataclass
class Server:
    url: str
    token: str
    home: Path  # the server's STARBURST_HOME
    log_path: Path
    pid: int
    cookies: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def api(
        self,
        method: str,
        path: str,
        body: bytes | dict | None = None,
        *,
        token: str | None = "default",
        headers: dict | None = None,
        cookies: bool = False,
        timeout: float = 30.0,
    ):
        """(status, parsed JSON or raw text, content type) of one request to `path` (under the base URL)."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        token = self.token if token == "default" else token
        if token:
            request.add_header("Authorization", f"token {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        handlers = [urllib.request.HTTPCookieProcessor(self.cookies)] if cookies else []
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=timeout) as response:
                status, raw, ctype = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            status, raw, ctype = error.code, error.read(), error.headers.get("Content-Type", "")
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return status, parsed, ctype

    def log_tail(self, lines: int = 40) -> str:
        return file_tail(self.log_path, lines)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("jupyter_server")
    base = tmp_path_factory.mktemp("jupyter-server")
    dirs = {name: base / name for name in ("root", "home", "config", "data", "runtime")}
    for d in dirs.values():
        d.mkdir()
    token, port = secrets.token_hex(24), free_port()
    env = {
        **os.environ,
        "STARBURST_HOME": str(dirs["home"]),
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={dirs['root']}",
        "--ServerApp.disable_check_xsrf=False",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = base / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=dirs["root"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    srv = Server(f"http://127.0.0.1:{port}", token, dirs["home"], log_path, proc.pid)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited with {proc.returncode}:\n{srv.log_tail()}")
            try:
                if srv.api("GET", "/api/status", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter server did not start in {START_TIMEOUT:.0f} s:\n{srv.log_tail()}")
            time.sleep(0.2)
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
