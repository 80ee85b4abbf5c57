"""The docker backend: workers are containers of the worker image on the local Docker engine.

Exactly the image Fargate runs (envimage: this environment's hash-tagged image), started with
`--network host` and labelled with the job id; the job's local folder is bind-mounted at the same
path, so the store URL (file:///...) is the same inside and out. Logs come from the containers;
a container that ended is read (its log kept in the job folder) and removed, and cancel stops and
removes the rest, so nothing labelled with a finished job is left behind.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from starburst_jupyter.backends import logfiles
from starburst_jupyter.backends.base import OneByOneBackend, WorkerRef, WorkerStart, worker_argv
from starburst_jupyter.core.config import Config, starburst_home
from starburst_jupyter.core.spec import JobSpec
from starburst_jupyter.protocol.exits import describe as describe_exit
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.stores.objects import LocalFolderStore, make_private_dirs, write_private

LABEL_JOB = "starburst.job"
LABEL_WORKER = "starburst.worker"
LABEL_MANAGED = "starburst.managed"


class DockerBackend(OneByOneBackend):
    name = "docker"
    poll_seconds = (0.05, 0.5)  # each poll is one engine API call per running container
    log_poll_seconds = 0.5

    def __init__(self, config: Config | None = None, home: Path | None = None, client: Any = None):
        self.home = Path(home) if home else starburst_home()
        self.config = config or Config()
        self.store = LocalFolderStore(self.home)
        self._client = client
        self._image: str | None = None
        self._lock = threading.Lock()

    # ----- the engine and the image ------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            from starburst_jupyter.envimage import docker_client

            self._client = docker_client()
        return self._client

    def prepare(
        self, spec: Any = None, *, on_progress: Any = None, job_id: str = "", matters: tuple[str, ...] = ()
    ) -> str:
        """Resolve the worker image before anything is launched: this environment's image (built first when
        config auto_build is on, else a clear error saying how to build it), or config `image`; either way
        refused when it differs from this kernel in Python, cloudpickle or starburst-jupyter (or `matters`)."""
        from starburst_jupyter import envimage

        with self._lock:
            if self._image is None or on_progress is not None:
                ref = envimage.ensure_local_image(
                    self.config,
                    on_progress=on_progress,
                    client=self.client,
                    build_missing=self.config.auto_build,
                    job_id=job_id,
                )
                envimage.ensure_no_skew(self._image_env(ref), ref, matters=matters)
                self._image = ref
            return self._image

    def _image_env(self, ref: str) -> dict[str, Any] | None:
        import docker

        from starburst_jupyter.envimage import BurstImageError, image_env_of

        try:
            return image_env_of(self.client, ref)
        except docker.errors.ImageNotFound:
            raise BurstImageError(
                f"The worker image {ref} (config image) is not on the local Docker engine; pull or build it first."
            ) from None

    # ----- the Backend protocol ------------------------------------------------------------------
    def concurrency(self, spec: JobSpec) -> int:
        self.prepare(spec)  # an image problem stops the job before launch (the launcher prepares first anyway)
        if self.config.local_concurrency:
            return self.config.local_concurrency
        cpus = os.cpu_count() or 1
        per_worker = max(1.0, (getattr(spec, "cpu_units", 1024) or 1024) / 1024)
        return max(1, int(cpus // per_worker))

    def job_files(self, job_id: str) -> JobFiles:
        return JobFiles(self.store, job_id)

    def start_worker(self, files: JobFiles, spec: JobSpec, start: WorkerStart) -> WorkerRef:
        index = start.index
        image = self.prepare(spec)
        job_dir = self.store.path(files.prefix).resolve()
        make_private_dirs(job_dir)
        command = worker_argv("python", self.store.url, files, start)
        container = self.client.containers.run(
            image,
            command,
            detach=True,
            name=f"starburst-{files.job_id}-w{index}-{int(time.time() * 1000) % 10**6}",
            network_mode="host",  # workers reach the same 127.0.0.1 as the kernel (a local S3 endpoint too)
            labels={LABEL_JOB: files.job_id, LABEL_WORKER: str(index), LABEL_MANAGED: "true"},
            # Only this job's folder, at the same path: the store URL works unchanged inside the container.
            volumes={str(job_dir): {"bind": str(job_dir), "mode": "rw"}},
            # The kernel's user, so the job's files stay the kernel's to read and delete.
            user=f"{os.getuid()}:{os.getgid()}",
            environment={"PYTHONUNBUFFERED": "1", "HOME": "/tmp"},
            mem_limit=f"{int(spec.memory_mib)}m",
        )
        return WorkerRef(
            index, start.wave, time.time(), handle=container, info={"container": container.id[:12], "image": image}
        )

    def poll(self, ref: WorkerRef) -> int | None:
        import docker

        if ref.exit_code is not None:
            return ref.exit_code
        try:
            ref.handle.reload()
        except docker.errors.NotFound:  # removed by stop(): its code was kept there
            return ref.exit_code if ref.exit_code is not None else -9
        state = ref.handle.attrs.get("State", {})
        if ref.handle.status not in ("exited", "dead"):
            return None
        code = int(state.get("ExitCode", -1))
        ref.reason = "killed: out of memory (raise --memory)" if state.get("OOMKilled") else describe_exit(code)
        self._finish(ref, code)
        return code

    def _finish(self, ref: WorkerRef, code: int) -> None:
        """Keep the container's whole log in the job folder, then remove the container."""
        import docker

        ref.exit_code = code
        try:
            data = ref.handle.logs(stdout=True, stderr=True)
        except docker.errors.APIError:
            data = b""
        path = self._log_path(ref.handle.labels.get(LABEL_JOB, ""), ref.index)
        if data and path is not None:
            _keep_log(path, data)
        _remove(ref.handle)

    def _log_path(self, job_id: str, worker: int) -> Path | None:
        return self.store.path(JobFiles(self.store, job_id).log_key(worker)) if job_id else None

    def stop(self, refs: list[WorkerRef], grace: float = 2.0) -> None:
        import docker

        for ref in refs:
            if ref.exit_code is not None:
                continue
            try:
                ref.handle.stop(timeout=max(1, int(round(grace))))
                ref.handle.reload()
                code = int(ref.handle.attrs.get("State", {}).get("ExitCode", -15))
            except docker.errors.NotFound:
                code = -9
            if not ref.reason:
                ref.reason = describe_exit(code)
            self._finish(ref, code)

    def stop_job(self, job_id: str, refs: list[WorkerRef], reason: str = "", keep: frozenset[str] = frozenset()) -> int:
        """Stop this job's workers we hold, then any other container labelled with the job."""
        alive = [r for r in refs if r.exit_code is None]
        self.stop(alive)
        return len(alive) + self._remove_labelled(job_id)

    def stop_recorded(self, record: dict[str, Any]) -> int:
        """The launching kernel is gone: every container labelled with the job goes (logs kept first)."""
        return self._remove_labelled(record["id"])

    def _remove_labelled(self, job_id: str) -> int:
        count = 0
        for container in self.client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={job_id}"}):
            worker = int(container.labels.get(LABEL_WORKER, "-1"))
            if container.status == "running":
                count += 1
                container.stop(timeout=1)
            path = self._log_path(job_id, worker)
            if path is not None and not path.exists():
                _keep_log(path, container.logs(stdout=True, stderr=True))
            _remove(container)
        return count

    def read_log(self, files: JobFiles, worker: int) -> str:
        path = self.store.path(files.log_key(worker))
        if path.exists() or path.is_symlink():  # (a symlink is refused there, not followed)
            return logfiles.read_whole(path)
        return self._container_log(files, worker).decode("utf-8", "replace")

    def _container_log(self, files: JobFiles, worker: int, **kwargs: Any) -> bytes:
        """A running (or not yet removed) worker's log from the engine; b'' when there is no such container."""
        for container in self.client.containers.list(
            all=True, filters={"label": [f"{LABEL_JOB}={files.job_id}", f"{LABEL_WORKER}={worker}"]}
        ):
            data: bytes = container.logs(stdout=True, stderr=True, **kwargs)
            return data
        return b""

    def read_log_bytes(self, files: JobFiles, worker: int, offset: int, limit: int) -> tuple[bytes, int, int]:
        """(TailsLogsCheaply) a seek in the kept log file once the worker ended; while it runs the engine
        gives no byte offsets, so its log is read and only the range asked for is returned."""
        path = self.store.path(files.log_key(worker))
        if path.exists() or path.is_symlink():
            return logfiles.read_range(path, offset, limit)
        data = self._container_log(files, worker)
        start = max(0, len(data) + offset) if offset < 0 else min(offset, len(data))
        return data[start : start + max(0, limit)], start, len(data)

    def read_log_tail(self, files: JobFiles, worker: int, lines: int) -> str:
        """(TailsLogsCheaply) the last lines: from the end of the kept file, or the engine's `tail`."""
        path = self.store.path(files.log_key(worker))
        if path.exists() or path.is_symlink():
            return logfiles.tail_lines(path, lines)
        return logfiles.last_lines(self._container_log(files, worker, tail=max(1, lines)), lines)

    def log_tail(self, files: JobFiles, ref: WorkerRef, offset: int) -> tuple[str, int]:
        import docker

        data = b""
        if ref.exit_code is None:
            try:
                data = ref.handle.logs(stdout=True, stderr=True)
            except docker.errors.NotFound:
                data = b""
        if data:
            data = data[offset:]
        else:  # ended: its log was kept in the job folder
            data, _, _ = logfiles.read_range(self.store.path(files.log_key(ref.index)), offset, 1024 * 1024)
        cut = data.rfind(b"\n") + 1  # only whole lines
        return data[:cut].decode("utf-8", "replace"), offset + cut


def _keep_log(path: Path, data: bytes) -> None:
    """A container's log into the job folder, atomically and private to the user (0600, folders 0700)."""
    make_private_dirs(path.parent)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    write_private(tmp, data)
    os.replace(tmp, path)


def _remove(container: Any) -> None:
    import docker

    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise
