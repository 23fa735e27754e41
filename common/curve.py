"""CURVE authentication between the broker and the workers (ZeroMQ CurveZMQ + ZAP).

Keys are kept in ZeroMQ's certificate format: ``NAME.key`` holds the public
key (safe to copy around), ``NAME.key_secret`` holds both keys (owner-only,
never copy it off its host). The broker's worker socket is a CURVE server
with the broker's secret key; a ZAP authenticator admits only clients whose
public key file is in the allow-list directory. Workers are CURVE clients
with their own key pair and the broker's public key.

Secret keys are registered with :func:`common.logs.register_secret`, so they
never reach a log line.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from common.logs import register_secret


class CurveError(Exception):
    """A key file is missing, unreadable or not a key of the expected kind."""


def generate(directory: Path, name: str) -> tuple[Path, Path]:
    """Create ``NAME.key`` (public, 0644) and ``NAME.key_secret`` (0600) in ``directory``.

    Refuses to overwrite an existing key pair. Returns (public file, secret file).
    """
    if not name or "/" in name or name.startswith("."):
        raise CurveError(f"key name {name!r} must be a plain file name")
    directory = Path(directory)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise CurveError(f"{public} or {secret} already exists; pick another name")
    directory.mkdir(parents=True, exist_ok=True)
    old_umask = os.umask(0o077)  # the secret file must never exist with wider permissions
    try:
        zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old_umask)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public, secret


def load_public(path: str | os.PathLike) -> bytes:
    """The public key (z85) in a ``.key`` or ``.key_secret`` file."""
    public, _ = _load(path)
    return public


def load_secret(path: str | os.PathLike) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file; the secret is registered as one."""
    public, secret = _load(path)
    if not secret:
        raise CurveError(f"{path} holds no secret key (use the .key_secret file)")
    register_secret(secret.decode("ascii"))
    return public, secret


def _load(path: str | os.PathLike) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise CurveError(f"cannot read CURVE key file {path}: {exc}") from None
    if not public:
        raise CurveError(f"{path} is not a CURVE key file")
    return public, secret


def make_server(socket: zmq.Socket, secret_file: str | os.PathLike) -> None:
    """Turn ``socket`` (before bind) into a CURVE server with the broker's key pair."""
    socket.curve_publickey, socket.curve_secretkey = load_secret(secret_file)
    socket.curve_server = True


ClientKeys = tuple[bytes, bytes, bytes]  #: a client's public and secret key, the server's public


def make_client(socket: zmq.Socket, keys: ClientKeys) -> None:
    """Turn ``socket`` (before connect) into a CURVE client of the given server."""
    socket.curve_publickey, socket.curve_secretkey, socket.curve_serverkey = keys


def start_authenticator(context: zmq.Context, authorized_dir: str | os.PathLike
                        ) -> ThreadAuthenticator:
    """A ZAP handler on ``context`` that admits CURVE clients whose public key
    file (``*.key``) is in ``authorized_dir``. Call :func:`reload_keys` to
    re-read the directory (e.g. on SIGHUP)."""
    if not Path(authorized_dir).is_dir():
        raise CurveError(f"authorized keys directory {authorized_dir} does not exist")
    auth = ThreadAuthenticator(context)
    auth.start()
    reload_keys(auth, authorized_dir)
    return auth


def reload_keys(auth: ThreadAuthenticator, authorized_dir: str | os.PathLike) -> int:
    """Re-read the allow-list directory; returns how many keys it holds."""
    auth.configure_curve(domain="*", location=str(authorized_dir))
    return len(list(Path(authorized_dir).glob("*.key")))
