"""The whole service as real processes on loopback, for end-to-end and fault tests.

:class:`ServiceTree` starts the broker, uploader, workers and front end with
``python -m <package>`` in their own process groups, all on free ports under
one temporary directory, and a :class:`tests.support.receiver.Receiver`
standing in for the Mask Asset Service. ``close()`` stops everything; use it
as a context manager or from a fixture's ``finally``. :class:`ProcessTree` is the
same with any other stand-in (an :class:`AssetService`), as the benches use.
"""

from __future__ import annotations

import io
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Generic, Protocol, Self, TypeVar

import numpy as np
import requests
from PIL import Image

from tests.support import procs
from tests.support.images import encode
from tests.support.receiver import Receiver

#: Shared secret between the uploader and the stand-in receiver in tests.
SECRET = "e2e-secret-0123456789abcdef"


class ServiceClient(ABC):
    """HTTP calls on a running front end at ``self.url`` (shared by the harnesses)."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The front end's base URL, ``http://host:port``."""

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=kw.pop("timeout", 10), **kw)

    def health(self) -> dict:
        try:
            return self.get("/health", timeout=3).json()
        except (requests.RequestException, ValueError):
            return {}

    def stats(self) -> dict:
        return self.get("/stats").json()

    def job(self, job_id: str) -> dict:
        resp = self.get(f"/jobs/{job_id}")
        return resp.json() if resp.status_code == 200 else {}


class AssetService(Protocol):
    """What a tree needs of its stand-in Mask Asset Service."""

    def start(self) -> str:
        """Start serving; returns the URL the uploader posts to."""
        ...

    def stop(self) -> None: ...
    def delivered_job_ids(self) -> list[str]: ...


AssetServiceT = TypeVar("AssetServiceT", bound=AssetService)


class ProcessTree(ServiceClient, Generic[AssetServiceT]):
    """Real processes wired together; each can be killed and restarted.

    Generic in its stand-in so that ``tree.receiver`` keeps the stand-in's own type
    (tests script a :class:`Receiver` through it)."""

    def __init__(self, root: Path, receiver: AssetServiceT, workers: int = 2,
                 extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.receiver = receiver
        self.receiver_url = self.receiver.start()
        self.port = procs.free_port()
        self.env = {
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "BROKER_FRONTEND_ENDPOINT": f"tcp://127.0.0.1:{procs.free_port()}",
            "BROKER_UPLOADER_ENDPOINT": f"tcp://127.0.0.1:{procs.free_port()}",
            "TEMP_FOLDER": str(root / "tmp"),
            "STATE_DIR": str(root / "state"),
            # auto without SCHP weights: the end-to-end tests cover the default selection.
            "SEGMENTATION_ENGINE": "auto", "SCHP_WEIGHTS": "",
            "MASK_ASSET_URL": self.receiver_url,
            "MASK_COMPONENT_SECRET": SECRET,
            "UPLOAD_BACKOFF_BASE_S": "0.02",
            "HEARTBEAT_INTERVAL_S": "0.25",
            "WORKER_THREADS": "1",
            "LOG_LEVEL": "INFO",
            **(extra_env or {}),
        }
        worker_port = procs.free_port()
        self.env.setdefault("BROKER_WORKER_BIND", f"tcp://127.0.0.1:{worker_port}")
        self.env.setdefault("BROKER_WORKER_ENDPOINT", self.env["BROKER_WORKER_BIND"])
        self.procs: dict[str, subprocess.Popen] = {}
        self.worker_count = workers

    # -- lifecycle -------------------------------------------------------
    def start_all(self) -> Self:
        self.start("broker")
        self.start("uploader")
        for i in range(self.worker_count):
            self.start_worker(i)
        self.start("frontend")
        self.wait_ready()
        return self

    def log_path(self, name: str) -> Path:
        """The log file of process ``name`` (e.g. ``broker``, ``segworker:0``)."""
        return self.logs / f"{name.replace(':', '_')}.log"

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        module = name.split(":")[0]
        proc = procs.start(module, {**self.env, **(env or {})}, *args,
                           log_path=self.log_path(name))
        self.procs[name] = proc
        return proc

    def start_worker(self, index: int) -> subprocess.Popen:
        return self.start(f"segworker:{index}", "--index", str(index))

    def stop(self, name: str, sig: int | None = None) -> None:
        proc = self.procs.pop(name, None)
        if sig is None:
            procs.stop(proc)
        else:
            procs.stop(proc, sig)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            procs.kill(proc)

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.receiver.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP ------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post_photo(self, job_id: str, photo: bytes, user_id: str = "user-1",
                   provider: str = "qwen", **kw: Any) -> requests.Response:
        files = {"user_image": ("photo.jpg", photo, "image/jpeg")}
        data = {"job_id": job_id, "user_id": user_id, "provider": provider}
        return requests.post(self.url + "/process", files=files, data=data,
                             timeout=kw.pop("timeout", 30), **kw)

    def wait_ready(self, timeout: float = 90.0, workers: int | None = None) -> None:
        want = self.worker_count if workers is None else workers
        procs.wait_for(lambda: (h := self.health()).get("segmentation_ready")
                       and h.get("workers", 0) >= want,
                       timeout, interval=0.2, what=f"{want} workers ready ({self.logs})")

    def wait_http(self, timeout: float = 30.0) -> None:
        """Wait until the front end answers /health (whatever the status)."""
        procs.wait_for(lambda: bool(self.health()), timeout, interval=0.1, what="front end up")

    def wait_delivered(self, job_ids: list[str], timeout: float = 120.0) -> None:
        wanted = set(job_ids)
        procs.wait_for(lambda: wanted <= set(self.receiver.delivered_job_ids()), timeout,
                       interval=0.2, what=f"delivery of {len(wanted)} jobs")

    def wait_state(self, job_id: str, states: tuple[str, ...], timeout: float = 60.0) -> dict:
        procs.wait_for(lambda: self.job(job_id).get("state") in states, timeout, interval=0.1,
                       what=f"job {job_id} to reach {states}")
        return self.job(job_id)


class ServiceTree(ProcessTree[Receiver]):
    """A :class:`ProcessTree` with the in-process :class:`Receiver` (a fresh one by default)."""

    def __init__(self, root: Path, workers: int = 2, extra_env: dict[str, str] | None = None,
                 receiver: Receiver | None = None) -> None:
        super().__init__(root, receiver or Receiver(SECRET), workers, extra_env)


def person_photo(fmt: str = "JPEG") -> bytes:
    """A real photo of a person (scikit-image's astronaut, upper body)."""
    from skimage import data
    return encode(data.astronaut(), fmt, quality=92)


def no_person_photo() -> bytes:
    """A real photo without a person (scikit-image's coffee cup)."""
    from skimage import data
    return encode(data.coffee(), "JPEG")


def mask_of(png: bytes) -> np.ndarray:
    """A 0/255 mask PNG as a bool array (and check it is single-channel 0/255)."""
    img = Image.open(io.BytesIO(png))
    assert img.mode == "L", img.mode
    arr = np.asarray(img)
    assert set(np.unique(arr)) <= {0, 255}
    return arr == 255
