"""Checks made before anything starts (``start.sh`` via ``python -m common.settings_check``).

Each check raises :class:`common.config.ConfigError` with one line that names the
setting (and its environment variable) and says what to do. They look only at
what a process would otherwise trip over minutes later, under supervisord,
where nobody reads the message: the asset service URL and secret (the uploader
crash-loops), the SCHP weights file (the workers go FATAL), the listening ports
(``Address already in use``) and the state folders.

Everything here is cheap: no model is loaded (a weights file is recognised by
its first bytes), and a port is tested by binding it for an instant.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import zipfile
from pathlib import Path

from common.config import ConfigError, Settings

#: Shortest accepted MASK_COMPONENT_SECRET, in characters.
MIN_SECRET_LENGTH = 16

#: Bytes of a legacy (non-zip) torch file searched for the checkpoint's key names.
HEADER_BYTES = 4 * 1024 * 1024

#: Start of every legacy torch.save file: pickle protocol 2, then torch's magic number.
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"

#: Key names every official SCHP checkpoint holds (first layer and the classifier),
#: whatever its generation or prefix.
SCHP_KEYS = (b"conv1.weight", b"fushion.3.weight")


def check_upload(settings: Settings) -> None:
    """The asset service URL and secret the uploader needs (one rule, used by both
    the uploader and the start-up check)."""
    up = settings.upload
    if not up.url:
        raise ConfigError("MASK_ASSET_URL (upload.url) is not set: set it to the Mask Asset "
                          "Service endpoint, e.g. https://assets.internal.example/masks")
    if not up.secret:
        raise ConfigError("MASK_COMPONENT_SECRET (upload.secret) is not set: set it to the "
                          f"secret shared with the asset service (at least {MIN_SECRET_LENGTH} "
                          "characters)")
    if len(up.secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"MASK_COMPONENT_SECRET (upload.secret) is too short "
                          f"({len(up.secret)} characters): use at least {MIN_SECRET_LENGTH}, "
                          "e.g. from: openssl rand -hex 24")
    if not (up.secret.isascii() and up.secret.isprintable()) or any(c.isspace() for c in up.secret):
        raise ConfigError("MASK_COMPONENT_SECRET (upload.secret) must be printable ASCII "
                          "without spaces (it is sent in an HTTP header)")


def check_weights(settings: Settings) -> None:
    """The SCHP weights file, when the workers will use one: it exists, is readable,
    and starts like a torch checkpoint holding SCHP's layers."""
    weights = settings.segmentation.schp.weights
    if settings.segmentation.chosen_engine()[0] != "schp":
        return
    if not weights:
        raise ConfigError("SCHP_WEIGHTS (segmentation.schp.weights) is not set but "
                          "SEGMENTATION_ENGINE=schp needs it: point it at an official SCHP "
                          "checkpoint (docs/schp.md), or use SEGMENTATION_ENGINE=auto")
    path = settings.resolve(weights)
    where = f"SCHP_WEIGHTS (segmentation.schp.weights) {path}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file; fix the path or unset SCHP_WEIGHTS to run "
                          "the parser engine")
    problem = weights_header_problem(path)
    if problem:
        raise ConfigError(f"{where}: {problem}; use an official SCHP checkpoint (docs/schp.md)")


def check_parser_weights(settings: Settings) -> None:
    """A configured parser weights file (PARSER_WEIGHTS) and its ``.sha256``, when
    the workers will run the parser. The shipped file, and the SHA-256 of any
    file, are checked by the workers as they load it."""
    path = settings.resolve(settings.segmentation.parser.weights)
    if path is None or settings.segmentation.chosen_engine()[0] != "parser":
        return
    for needed in (path, Path(f"{path}.sha256")):
        if not needed.is_file():
            raise ConfigError(f"PARSER_WEIGHTS (segmentation.parser.weights) {path}: "
                              f"{needed.name} is missing; fix the path or unset PARSER_WEIGHTS")


def weights_header_problem(path: Path) -> str | None:
    """Why ``path`` is not a torch checkpoint of SCHP's layout, or None.

    Only the start is read: the zip directory and its small ``data.pkl`` for
    files saved by torch >= 1.6, the first :data:`HEADER_BYTES` for the legacy
    format of the official release files. The full check happens in the workers.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    if head.startswith(b"PK\x03\x04"):
        return _zip_problem(path)
    if not head.startswith(LEGACY_TORCH_MAGIC):
        return "not a PyTorch checkpoint (neither a torch zip file nor a legacy torch.save file)"
    return _keys_problem(head)


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if not pickles:
                return "a zip file but not a PyTorch checkpoint (no data.pkl inside)"
            return _keys_problem(archive.read(pickles[0]))
    except (zipfile.BadZipFile, OSError) as exc:
        return f"a damaged zip/torch file ({exc})"


def _keys_problem(pickled: bytes) -> str | None:
    missing = [k.decode() for k in SCHP_KEYS if k not in pickled]
    if missing:
        return (f"a PyTorch file, but not an SCHP checkpoint (no {', '.join(missing)} "
                "parameter)")
    return None


def check_ports(settings: Settings) -> None:
    """The HTTP port and the broker's TCP endpoints are free on this host."""
    server = settings.server
    _check_port(server.host, server.port, f"PORT (server.port) {server.port} on {server.host}",
                "stop what listens there or choose another PORT")
    b = settings.broker
    for env, dotted, endpoint in (
            ("BROKER_FRONTEND_ENDPOINT", "broker.frontend_endpoint", b.frontend_endpoint),
            ("BROKER_WORKER_BIND", "broker.worker_bind", b.worker_bind),
            ("BROKER_UPLOADER_ENDPOINT", "broker.uploader_endpoint", b.uploader_endpoint)):
        address = tcp_address(endpoint)
        if address is not None:
            _check_port(*address, f"{env} ({dotted}) {endpoint}",
                        f"stop what listens there or set {env} to another port")


def tcp_address(endpoint: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``tcp://host:port`` ZeroMQ endpoint (``*`` is every
    address); None for ipc/inproc, or a port ZeroMQ picks itself."""
    if not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if not port.isdigit():
        return None
    host = host.strip("[]")
    return ("0.0.0.0" if host in ("*", "") else host), int(port)


def _check_port(host: str, port: int, what: str, fix: str) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{what}: cannot resolve {host!r} ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # as Tornado and ZeroMQ do, so a port left in TIME_WAIT does not count as busy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"{what}: the port is already in use; {fix}") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(f"{what}: {host} is not an address of this host") from None
            raise ConfigError(f"{what}: cannot listen there ({exc.strerror})") from None


def check_folders(settings: Settings) -> None:
    """TEMP_FOLDER and STATE_DIR exist (or can be made) and take files."""
    for env, dotted, path in (("TEMP_FOLDER", "paths.temp_folder", settings.temp_folder),
                              ("STATE_DIR", "paths.state_dir", settings.state_dir)):
        what = f"{env} ({dotted}) {path}"
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ConfigError(f"{what}: not writable ({exc.strerror}); make it writable by "
                              f"this user or point {env} elsewhere") from None


#: Every check, in the order they run.
CHECKS = (check_upload, check_weights, check_parser_weights, check_ports, check_folders)


def check_all(settings: Settings) -> None:
    """Run :data:`CHECKS`; the first failure raises its ConfigError."""
    for check in CHECKS:
        check(settings)
