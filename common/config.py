"""The service's configuration: one frozen object built once from ``config.yaml``
and the environment.

Only each process's ``main()`` calls :func:`load_settings`; everything else gets
the :class:`Settings` object (or the section it needs) as an argument. A bad
value stops start-up with a :class:`ConfigError` that names the setting.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

#: Default location of the configuration file, relative to the project root.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"


class ConfigError(Exception):
    """A setting is missing or has a value the service cannot run with."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "0.0.0.0"
    port: int = 8003
    max_upload_mb: float = 20.0
    max_image_pixels: int = 40_000_000
    api_key: str | None = None
    broker_timeout_s: float = 5.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass(frozen=True)
class QueueSettings:
    max_size: int = 100
    job_deadline_s: float = 300.0
    max_attempts: int = 5
    remember_finished: int = 10_000
    #: Seconds without any live worker after which POST /process answers 503 (a worker
    #: restart takes less, so it refuses nothing); counted from the broker's start too.
    no_worker_grace_s: float = 60.0


@dataclass(frozen=True)
class CurveSettings:
    enabled: bool = False
    server_secret_key_file: str | None = None
    authorized_keys_dir: str | None = None


@dataclass(frozen=True)
class BrokerSettings:
    frontend_endpoint: str = "tcp://127.0.0.1:5555"
    worker_bind: str = "tcp://127.0.0.1:5556"
    worker_connect: str = "tcp://127.0.0.1:5556"
    uploader_endpoint: str = "tcp://127.0.0.1:5557"
    heartbeat_interval_s: float = 1.0
    heartbeat_liveness: int = 5
    curve: CurveSettings = field(default_factory=CurveSettings)

    @property
    def peer_expiry_s(self) -> float:
        """Silence after which a worker or uploader counts as dead."""
        return self.heartbeat_interval_s * self.heartbeat_liveness


@dataclass(frozen=True)
class PathSettings:
    temp_folder: str = "var/tmp"
    state_dir: str = "var/state"


@dataclass(frozen=True)
class WorkerSettings:
    count: int = 2
    threads: int = 1
    device: str = "auto"
    cpu_affinity: bool = True
    inline_images: bool = False
    curve_secret_key_file: str | None = None
    curve_server_key_file: str | None = None
    gpus: str | None = None


@dataclass(frozen=True)
class LabelSet:
    upper: tuple[int, ...]
    lower: tuple[int, ...]


@dataclass(frozen=True)
class SchpSettings:
    weights: str | None = None
    dataset: str = "auto"
    flip: bool = False
    precision: str = "auto"
    backend: str = "auto"
    bf16: bool | None = None   #: deprecated (SCHP_BF16): true = bf16, false = fp32
    labels: Mapping[str, LabelSet] = field(default_factory=dict)


@dataclass(frozen=True)
class ParserSettings:
    weights: str | None = None
    labels: LabelSet = LabelSet(upper=(1, 3), lower=(2, 3))


@dataclass(frozen=True)
class RefineSettings:
    fill_holes: bool = True
    min_speck_fraction: float = 0.002
    dilation_fraction: float = 0.0
    single_person: bool = True


@dataclass(frozen=True)
class SegmentationSettings:
    engine: str = "auto"
    write_seg_map: bool = False
    schp: SchpSettings = field(default_factory=SchpSettings)
    parser: ParserSettings = field(default_factory=ParserSettings)
    refine: RefineSettings = field(default_factory=RefineSettings)

    def chosen_engine(self) -> tuple[str, str]:
        """``(engine name, why)``: the selection rule, in one place for the workers
        and the start-up checks. ``auto`` is SCHP when its weights are configured,
        otherwise the parser; any other value names the engine itself."""
        if self.engine != "auto":
            return self.engine, f"SEGMENTATION_ENGINE={self.engine}"
        if self.schp.weights:
            return "schp", ("SEGMENTATION_ENGINE=auto and SCHP weights are configured "
                            f"({self.schp.weights})")
        return "parser", "SEGMENTATION_ENGINE=auto and no SCHP weights configured"


@dataclass(frozen=True)
class UploadSettings:
    url: str | None = None
    secret: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    retries: int = 5
    backoff_base_s: float = 1.0
    backoff_jitter_s: float = 0.25


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    segmentation: SegmentationSettings = field(default_factory=SegmentationSettings)
    upload: UploadSettings = field(default_factory=UploadSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    #: Directory of the config file; relative paths in it are resolved against it.
    base_dir: str = "."

    def resolve(self, path: str | None) -> Path | None:
        """An absolute path for a path setting (relative ones are from ``base_dir``)."""
        if path is None:
            return None
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def temp_folder(self) -> Path:
        return self.resolve(self.paths.temp_folder)

    @property
    def state_dir(self) -> Path:
        return self.resolve(self.paths.state_dir)


#: Environment variable -> dotted setting. The README's settings table mirrors this.
ENV_OVERRIDES: dict[str, str] = {
    "HOST": "server.host",
    "PORT": "server.port",
    "MAX_UPLOAD_MB": "server.max_upload_mb",
    "MAX_IMAGE_PIXELS": "server.max_image_pixels",
    "API_KEY": "server.api_key",
    "QUEUE_MAX_SIZE": "queue.max_size",
    "JOB_DEADLINE_S": "queue.job_deadline_s",
    "NO_WORKER_GRACE_S": "queue.no_worker_grace_s",
    "BROKER_FRONTEND_ENDPOINT": "broker.frontend_endpoint",
    "BROKER_WORKER_BIND": "broker.worker_bind",
    "BROKER_WORKER_ENDPOINT": "broker.worker_connect",
    "BROKER_UPLOADER_ENDPOINT": "broker.uploader_endpoint",
    "HEARTBEAT_INTERVAL_S": "broker.heartbeat_interval_s",
    "BROKER_CURVE": "broker.curve.enabled",
    "BROKER_CURVE_SECRET_FILE": "broker.curve.server_secret_key_file",
    "BROKER_CURVE_AUTHORIZED_DIR": "broker.curve.authorized_keys_dir",
    "TEMP_FOLDER": "paths.temp_folder",
    "STATE_DIR": "paths.state_dir",
    "WORKER_COUNT": "workers.count",
    "WORKER_THREADS": "workers.threads",
    "SCHP_DEVICE": "workers.device",
    "WORKER_CPU_AFFINITY": "workers.cpu_affinity",
    "WORKER_INLINE_IMAGES": "workers.inline_images",
    "WORKER_CURVE_SECRET_FILE": "workers.curve_secret_key_file",
    "WORKER_CURVE_SERVER_KEY_FILE": "workers.curve_server_key_file",
    "WORKER_GPUS": "workers.gpus",
    "SEGMENTATION_ENGINE": "segmentation.engine",
    "WRITE_SEG_MAP": "segmentation.write_seg_map",
    "SCHP_WEIGHTS": "segmentation.schp.weights",
    "PARSER_WEIGHTS": "segmentation.parser.weights",
    "SCHP_DATASET": "segmentation.schp.dataset",
    "SCHP_FLIP": "segmentation.schp.flip",
    "SCHP_PRECISION": "segmentation.schp.precision",
    "SCHP_BACKEND": "segmentation.schp.backend",
    "SCHP_BF16": "segmentation.schp.bf16",
    "MASK_ASSET_URL": "upload.url",
    "MASK_COMPONENT_SECRET": "upload.secret",
    "MASK_ASSET_CA_BUNDLE": "upload.ca_bundle",
    "UPLOAD_BACKOFF_BASE_S": "upload.backoff_base_s",
    "LOG_LEVEL": "logging.level",
}

#: Environment variable naming the config file (the seed's name for it).
CONFIG_PATH_ENV = "SCHP_CONFIG_PATH"

_ENGINES = ("auto", "parser", "schp", "pose")
_DEVICES = ("auto", "cpu", "cuda")
_DATASETS = ("auto", "atr", "lip", "pascal")
_PRECISIONS = ("auto", "fp32", "bf16")
_BACKENDS = ("auto", "openvino", "eager")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def load_settings(path: str | os.PathLike | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read the config file, apply environment overrides, validate, and freeze.

    ``path`` defaults to ``$SCHP_CONFIG_PATH`` or the project's ``config.yaml``.
    Raises :class:`ConfigError` naming the first bad setting.
    """
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)
    raw = _read_yaml(path)
    if path.resolve() != DEFAULT_CONFIG_PATH:
        # A deployment's own file only needs what it changes: the project's
        # config.yaml supplies the rest (label sets included).
        raw = _merged(_read_yaml(DEFAULT_CONFIG_PATH), raw)
    for var, dotted in ENV_OVERRIDES.items():
        value = environ.get(var)
        if value is not None and value != "":
            # A text setting takes the variable as it is: parsed as YAML, a secret or key
            # such as "null", "0x1F" or "12:30" would become None, 31 or 750.
            parsed = value if _is_text_setting(dotted) else _parse_env_value(value)
            _set_dotted(raw, dotted, parsed, var)
    settings = _build(Settings, raw, "")
    settings = dataclasses.replace(settings, base_dir=str(path.resolve().parent))
    _validate(settings)
    return settings


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping")
    return data


def _merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _parse_env_value(value: str) -> Any:
    """Environment strings are parsed as YAML scalars: '5' -> 5, 'true' -> True."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, (str, int, float, bool)) or parsed is None else value


def _is_text_setting(dotted: str) -> bool:
    """True when the setting ``dotted`` (e.g. ``server.api_key``) holds a string."""
    cls: Any = Settings
    *parents, leaf = dotted.split(".")
    for key in parents:
        cls = _NESTED[{f.name: f for f in dataclasses.fields(cls)}[key].type]
    kind = {f.name: f for f in dataclasses.fields(cls)}[leaf].type
    return kind.replace("| None", "").strip() == "str"


def _set_dotted(raw: dict, dotted: str, value: Any, source: str) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: must be a mapping (while applying {source})")
        node = child
    node[leaf] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking names and types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "base_dir"}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigError(f"{prefix}{sorted(unknown)[0]}: unknown setting")
    values = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        values[name] = _coerce(f.type, raw[name], f"{prefix}{name}")
    return cls(**values)


def _named(name: str) -> str:
    """``name`` plus the environment variable that sets it, if any."""
    var = next((v for v, dotted in ENV_OVERRIDES.items() if dotted == name), None)
    return f"{name} ({var})" if var else name


def _coerce(type_name: Any, value: Any, name: str) -> Any:
    t = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    if t in _NESTED:
        return _build(_NESTED[t], value, name + ".")
    if t == "Mapping[str, LabelSet]":
        return _label_sets(value, name)
    if t == "LabelSet":
        return _label_set(value, name)
    optional = t.endswith("| None")
    base = t.replace("| None", "").strip()
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{_named(name)}: must be set")
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{_named(name)}: must be true or false, got {value!r}")
    if base == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{_named(name)}: must be a whole number, got {value!r}")
    if base == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{_named(name)}: must be a finite number, got {value!r}")
            return float(value)
        raise ConfigError(f"{_named(name)}: must be a number, got {value!r}")
    if base == "str":
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{_named(name)}: must be a string, got {value!r}")
    raise ConfigError(f"{_named(name)}: unsupported setting type {t}")


def _label_sets(value: Any, name: str) -> dict[str, LabelSet]:
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: must map a dataset to its upper and lower label lists")
    return {str(dataset): _label_set(parts, f"{name}.{dataset}") for dataset, parts in value.items()}


def _label_set(parts: Any, where: str) -> LabelSet:
    if not isinstance(parts, dict) or set(parts) != {"upper", "lower"}:
        raise ConfigError(f"{where}: must have exactly 'upper' and 'lower' label lists")
    ids = {}
    for part in ("upper", "lower"):
        labels = parts[part]
        if (not isinstance(labels, list)
                or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 256
                           for i in labels)):
            raise ConfigError(f"{where}.{part}: must be a list of label ids 0-255")
        ids[part] = tuple(labels)
    return LabelSet(**ids)


#: The setting sections by their type's name (annotations are strings here).
_NESTED: dict[str, type] = {c.__name__: c for c in (
    ServerSettings, QueueSettings, CurveSettings, BrokerSettings, PathSettings, WorkerSettings,
    SchpSettings, ParserSettings, RefineSettings, SegmentationSettings, UploadSettings, LoggingSettings)}


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {message}")


def _validate(s: Settings) -> None:
    _check(1 <= s.server.port <= 65535, "server.port (PORT)", f"must be 1-65535, got {s.server.port}")
    _check(s.server.max_upload_mb > 0, "server.max_upload_mb", "must be positive")
    _check(s.server.max_image_pixels > 0, "server.max_image_pixels", "must be positive")
    _check(s.server.api_key is None or s.server.api_key != "", "server.api_key (API_KEY)",
           "must not be empty (leave it unset to serve without a key)")
    _check(s.server.broker_timeout_s > 0, "server.broker_timeout_s", "must be positive")
    _check(s.queue.max_size >= 1, "queue.max_size (QUEUE_MAX_SIZE)",
           f"must be at least 1, got {s.queue.max_size}")
    _check(s.queue.job_deadline_s > 0, "queue.job_deadline_s", "must be positive")
    _check(s.queue.max_attempts >= 1, "queue.max_attempts", "must be at least 1")
    _check(s.queue.remember_finished >= 0, "queue.remember_finished", "must not be negative")
    _check(s.queue.no_worker_grace_s >= 0, "queue.no_worker_grace_s (NO_WORKER_GRACE_S)",
           "must not be negative")
    _check(s.broker.heartbeat_interval_s > 0, "broker.heartbeat_interval_s", "must be positive")
    _check(s.broker.heartbeat_liveness >= 2, "broker.heartbeat_liveness", "must be at least 2")
    for name in ("frontend_endpoint", "worker_bind", "worker_connect", "uploader_endpoint"):
        ep = getattr(s.broker, name)
        _check(ep.startswith(("tcp://", "ipc://", "inproc://")), f"broker.{name}",
               f"must be a ZeroMQ endpoint such as tcp://127.0.0.1:5555, got {ep!r}")
    if s.broker.curve.enabled:
        _check(bool(s.broker.curve.server_secret_key_file), "broker.curve.server_secret_key_file",
               "must be set when CURVE is enabled")
        _check(bool(s.broker.curve.authorized_keys_dir), "broker.curve.authorized_keys_dir",
               "must be set when CURVE is enabled")
    _check(s.workers.count >= 1, "workers.count (WORKER_COUNT)",
           f"must be at least 1, got {s.workers.count}")
    _check(s.workers.threads >= 1, "workers.threads (WORKER_THREADS)", "must be at least 1")
    _check(s.workers.device in _DEVICES, "workers.device (SCHP_DEVICE)",
           f"must be one of {', '.join(_DEVICES)}, got {s.workers.device!r}")
    gpus = s.workers.gpus
    _check(gpus is None or all(p.strip().isdigit() for p in gpus.split(",")),
           "workers.gpus (WORKER_GPUS)",
           f"must be comma-separated GPU numbers like 0,1, got {gpus!r}")
    seg = s.segmentation
    _check(seg.engine in _ENGINES, "segmentation.engine (SEGMENTATION_ENGINE)",
           f"must be one of {', '.join(_ENGINES)}, got {seg.engine!r}")
    _check(seg.schp.dataset in _DATASETS, "segmentation.schp.dataset (SCHP_DATASET)",
           f"must be one of {', '.join(_DATASETS)}, got {seg.schp.dataset!r}")
    _check(seg.schp.precision in _PRECISIONS, "segmentation.schp.precision (SCHP_PRECISION)",
           f"must be one of {', '.join(_PRECISIONS)}, got {seg.schp.precision!r}")
    _check(seg.schp.backend in _BACKENDS, "segmentation.schp.backend (SCHP_BACKEND)",
           f"must be one of {', '.join(_BACKENDS)}, got {seg.schp.backend!r}")
    old = seg.schp.bf16
    _check(old is None or seg.schp.precision in ("auto", "bf16" if old else "fp32"),
           "segmentation.schp.bf16 (SCHP_BF16)",
           f"is {str(old).lower()} but segmentation.schp.precision (SCHP_PRECISION) is "
           f"{seg.schp.precision}; SCHP_BF16 is deprecated: unset it and keep SCHP_PRECISION")
    for ds in ("atr", "lip", "pascal"):
        _check(ds in seg.schp.labels, f"segmentation.schp.labels.{ds}", "is missing")
    _check(0 <= seg.refine.min_speck_fraction < 1, "segmentation.refine.min_speck_fraction",
           "must be in [0, 1)")
    _check(0 <= seg.refine.dilation_fraction <= 0.05, "segmentation.refine.dilation_fraction",
           "must be in [0, 0.05] (a share of the image diagonal)")
    up = s.upload
    if up.url is not None:
        _check(up.url.startswith(("http://", "https://")), "upload.url (MASK_ASSET_URL)",
               "must be an http:// or https:// URL")
    _check(0 <= up.retries <= 20, "upload.retries", "must be 0-20")
    _check(up.backoff_base_s >= 0, "upload.backoff_base_s (UPLOAD_BACKOFF_BASE_S)", "must not be negative")
    _check(up.connect_timeout_s > 0 and up.read_timeout_s > 0, "upload timeouts", "must be positive")
    _check(s.logging.level.upper() in _LEVELS, "logging.level (LOG_LEVEL)",
           f"must be one of {', '.join(_LEVELS)}, got {s.logging.level!r}")
