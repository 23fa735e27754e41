"""The service's configuration: one frozen object built once from the defaults
below, a config file and the environment.

The dataclasses are the one source of every setting: its type (a ``Literal``
lists the accepted words), default, environment variable (:class:`Env`) and the
rules its value must keep (:class:`Rule`). ``config.yaml`` shows them all,
commented out; a config file holds only what it changes. Only each process's
``main()`` calls :func:`load_settings`; everything else gets the :class:`Settings`
(or the section it needs) as an argument. A bad value stops start-up with a
:class:`ConfigError` that names the setting.
"""

import dataclasses
import math
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

import yaml

#: Default location of the configuration file, relative to the project root.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"
#: Environment variable naming the config file (the seed's name for it).
CONFIG_PATH_ENV = "SCHP_CONFIG_PATH"


class ConfigError(Exception):
    """A setting is missing or has a value the service cannot run with."""


@dataclass(frozen=True)
class Env:
    """Field annotation: the environment variable that overrides the setting."""
    name: str


@dataclass(frozen=True)
class Rule:
    """Field annotation: ``test(value)`` must hold for a set value, else the
    setting is refused with ``message`` (``{}`` is replaced by the value)."""
    test: Callable[[Any], bool]
    message: str


def at_least(low: int) -> Rule:
    return Rule(lambda v: v >= low, f"must be at least {low}, got {{}}")


POSITIVE = Rule(lambda v: v > 0, "must be positive")
NOT_NEGATIVE = Rule(lambda v: v >= 0, "must not be negative")
ENDPOINT = Rule(lambda v: v.startswith(("tcp://", "ipc://", "inproc://")),
                "must be a ZeroMQ endpoint such as tcp://127.0.0.1:5555, got {!r}")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Engine = Literal["auto", "parser", "schp", "pose"]
Device = Literal["auto", "cpu", "cuda"]
Dataset = Literal["auto", "atr", "lip", "pascal"]
Precision = Literal["auto", "fp32", "bf16"]
Backend = Literal["auto", "openvino", "eager"]


@dataclass(frozen=True)
class ServerSettings:
    host: Annotated[str, Env("HOST")] = "0.0.0.0"
    port: Annotated[int, Env("PORT"), Rule(lambda v: 1 <= v <= 65535, "must be 1-65535, got {}")] = 8003
    max_upload_mb: Annotated[float, Env("MAX_UPLOAD_MB"), POSITIVE] = 20.0
    max_image_pixels: Annotated[int, Env("MAX_IMAGE_PIXELS"), POSITIVE] = 40_000_000
    api_key: Annotated[str | None, Env("API_KEY"), Rule(
        bool, "must not be empty (leave it unset to serve without a key)")] = None
    broker_timeout_s: Annotated[float, POSITIVE] = 5.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass(frozen=True)
class QueueSettings:
    max_size: Annotated[int, Env("QUEUE_MAX_SIZE"), at_least(1)] = 100
    job_deadline_s: Annotated[float, Env("JOB_DEADLINE_S"), POSITIVE] = 300.0
    max_attempts: Annotated[int, at_least(1)] = 5
    #: Finished jobs the broker remembers, and delivered ones the uploader does.
    remember_finished: Annotated[int, NOT_NEGATIVE] = 10_000
    #: Seconds without any live worker after which POST /process answers 503 (a worker
    #: restart takes less, so it refuses nothing); counted from the broker's start too.
    no_worker_grace_s: Annotated[float, Env("NO_WORKER_GRACE_S"), NOT_NEGATIVE] = 60.0


@dataclass(frozen=True)
class CurveSettings:
    enabled: Annotated[bool, Env("BROKER_CURVE")] = False
    server_secret_key_file: Annotated[str | None, Env("BROKER_CURVE_SECRET_FILE")] = None
    authorized_keys_dir: Annotated[str | None, Env("BROKER_CURVE_AUTHORIZED_DIR")] = None


@dataclass(frozen=True)
class BrokerSettings:
    frontend_endpoint: Annotated[str, Env("BROKER_FRONTEND_ENDPOINT"), ENDPOINT] = \
        "tcp://127.0.0.1:5555"
    worker_bind: Annotated[str, Env("BROKER_WORKER_BIND"), ENDPOINT] = "tcp://127.0.0.1:5556"
    worker_connect: Annotated[str, Env("BROKER_WORKER_ENDPOINT"), ENDPOINT] = "tcp://127.0.0.1:5556"
    uploader_endpoint: Annotated[str, Env("BROKER_UPLOADER_ENDPOINT"), ENDPOINT] = \
        "tcp://127.0.0.1:5557"
    heartbeat_interval_s: Annotated[float, Env("HEARTBEAT_INTERVAL_S"), POSITIVE] = 1.0
    heartbeat_liveness: Annotated[int, at_least(2)] = 5
    curve: CurveSettings = field(default_factory=CurveSettings)

    @property
    def peer_expiry_s(self) -> float:
        """Silence after which a worker or uploader counts as dead."""
        return self.heartbeat_interval_s * self.heartbeat_liveness


@dataclass(frozen=True)
class PathSettings:
    temp_folder: Annotated[str, Env("TEMP_FOLDER")] = "var/tmp"
    state_dir: Annotated[str, Env("STATE_DIR")] = "var/state"


@dataclass(frozen=True)
class WorkerSettings:
    count: Annotated[int, Env("WORKER_COUNT"), at_least(1)] = 2
    threads: Annotated[int, Env("WORKER_THREADS"), at_least(1)] = 1
    device: Annotated[Device, Env("SCHP_DEVICE")] = "auto"
    cpu_affinity: Annotated[bool, Env("WORKER_CPU_AFFINITY")] = True
    inline_images: Annotated[bool, Env("WORKER_INLINE_IMAGES")] = False
    curve_secret_key_file: Annotated[str | None, Env("WORKER_CURVE_SECRET_FILE")] = None
    curve_server_key_file: Annotated[str | None, Env("WORKER_CURVE_SERVER_KEY_FILE")] = None
    gpus: Annotated[str | None, Env("WORKER_GPUS"), Rule(
        lambda v: all(p.strip().isdigit() for p in v.split(",")),
        "must be comma-separated GPU numbers like 0,1, got {!r}")] = None

    @property
    def gpu_ids(self) -> list[str]:
        """``gpus`` as a list: ``"0, 1"`` -> ``["0", "1"]``; unset -> ``[]``."""
        return [part.strip() for part in self.gpus.split(",")] if self.gpus else []


@dataclass(frozen=True)
class LabelSet:
    upper: tuple[int, ...]
    lower: tuple[int, ...]


#: The label ids that make each mask, per SCHP dataset (docs/schp.md).
SCHP_LABELS = {"atr": LabelSet(upper=(4, 7), lower=(5, 6, 7)),
               "lip": LabelSet(upper=(5, 6, 7, 10), lower=(6, 9, 10, 12)),
               "pascal": LabelSet(upper=(2, 3, 4), lower=(5, 6))}


@dataclass(frozen=True)
class SchpSettings:
    weights: Annotated[str | None, Env("SCHP_WEIGHTS")] = None
    dataset: Annotated[Dataset, Env("SCHP_DATASET")] = "auto"
    flip: Annotated[bool, Env("SCHP_FLIP")] = False
    precision: Annotated[Precision, Env("SCHP_PRECISION")] = "auto"
    backend: Annotated[Backend, Env("SCHP_BACKEND")] = "auto"
    bf16: Annotated[bool | None, Env("SCHP_BF16")] = None  #: deprecated: true = bf16, false = fp32
    labels: Mapping[str, LabelSet] = field(default_factory=lambda: dict(SCHP_LABELS))


@dataclass(frozen=True)
class ParserSettings:
    weights: Annotated[str | None, Env("PARSER_WEIGHTS")] = None
    precision: Annotated[Precision, Env("PARSER_PRECISION")] = "auto"
    labels: LabelSet = LabelSet(upper=(1, 3), lower=(2, 3))


@dataclass(frozen=True)
class RefineSettings:
    fill_holes: bool = True
    min_speck_fraction: Annotated[float, Rule(lambda v: 0 <= v < 1, "must be in [0, 1)")] = 0.002
    dilation_fraction: Annotated[float, Rule(lambda v: 0 <= v <= 0.05, "must be in [0, 0.05] "
                                             "(a share of the image diagonal)")] = 0.0
    single_person: bool = True


@dataclass(frozen=True)
class SegmentationSettings:
    engine: Annotated[Engine, Env("SEGMENTATION_ENGINE")] = "auto"
    write_seg_map: Annotated[bool, Env("WRITE_SEG_MAP")] = False
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
    url: Annotated[str | None, Env("MASK_ASSET_URL"), Rule(
        lambda v: v.startswith(("http://", "https://")), "must be an http:// or https:// URL")] = None
    secret: Annotated[str | None, Env("MASK_COMPONENT_SECRET")] = field(default=None, repr=False)
    ca_bundle: Annotated[str | None, Env("MASK_ASSET_CA_BUNDLE")] = None
    connect_timeout_s: Annotated[float, POSITIVE] = 5.0
    read_timeout_s: Annotated[float, POSITIVE] = 30.0
    retries: Annotated[int, Rule(lambda v: 0 <= v <= 20, "must be 0-20")] = 5  #: after the first
    backoff_base_s: Annotated[float, Env("UPLOAD_BACKOFF_BASE_S"), NOT_NEGATIVE] = 1.0
    backoff_jitter_s: float = 0.25


@dataclass(frozen=True)
class LoggingSettings:
    level: Annotated[str, Env("LOG_LEVEL"), Rule(
        lambda v: v.upper() in LEVELS, f"must be one of {', '.join(LEVELS)}, got {{!r}}")] = "INFO"


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

    @typing.overload
    def resolve(self, path: str) -> Path: ...
    @typing.overload
    def resolve(self, path: str | None) -> Path | None: ...

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


@dataclass(frozen=True)
class _Spec:
    """What the annotations say about one setting."""
    kind: Any                 #: bool, int, float, str, a Literal, LabelSet, a Mapping or a section
    optional: bool            #: None is a value (``X | None``)
    env: str | None
    rules: tuple[Rule, ...]


def _is_section(kind: Any) -> bool:
    return dataclasses.is_dataclass(kind) and kind is not LabelSet


def _specs(cls: type, prefix: str = "") -> dict[str, _Spec]:
    """Every setting under section ``cls``, by dotted name, sections before their fields."""
    out: dict[str, _Spec] = {}
    for name, hint in get_type_hints(cls, include_extras=True).items():
        extras: list[Any] = []
        if get_origin(hint) is Annotated:
            hint, *extras = get_args(hint)
        optional = type(None) in get_args(hint)
        if optional:
            [hint] = [arg for arg in get_args(hint) if arg is not type(None)]
        env = next((extra.name for extra in extras if isinstance(extra, Env)), None)
        out[prefix + name] = _Spec(hint, optional, env,
                                   tuple(extra for extra in extras if isinstance(extra, Rule)))
        if _is_section(hint):
            out.update(_specs(hint, f"{prefix}{name}."))
    return out


#: Every setting, by dotted name (``base_dir`` is where the file was, not a setting).
SPECS = {name: spec for name, spec in _specs(Settings).items() if name != "base_dir"}
#: Environment variable -> dotted setting (the README's settings table lists them).
ENV_OVERRIDES = {spec.env: name for name, spec in SPECS.items() if spec.env}


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read the config file over the defaults, apply environment overrides,
    validate, and freeze.

    ``path`` defaults to ``$SCHP_CONFIG_PATH`` or the project's ``config.yaml``.
    Raises :class:`ConfigError` naming the first bad setting.
    """
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)
    raw = _merged(_plain(Settings()), _read_yaml(path), "")
    for name, spec in SPECS.items():
        value = environ.get(spec.env) if spec.env else None
        if value:  # set and not empty
            # A text setting takes the variable as it is: parsed as YAML, a secret or key
            # such as "null", "0x1F" or "12:30" would become None, 31 or 750.
            text = spec.kind is str or get_origin(spec.kind) is Literal
            layer: Any = value if text else _parse_env_value(value)
            for key in reversed(name.split(".")):
                layer = {key: layer}
            raw = _merged(raw, layer, "")
    settings = dataclasses.replace(_build(Settings, raw, ""), base_dir=str(path.resolve().parent))
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Raise :class:`ConfigError` for the first setting of ``settings`` (however
    it was made) that has the wrong type or breaks a rule, its own or one that
    involves other settings."""
    _build(Settings, _plain(settings), "")
    curve, workers, schp = settings.broker.curve, settings.workers, settings.segmentation.schp
    for key in ("server_secret_key_file", "authorized_keys_dir"):
        _require(not curve.enabled or bool(getattr(curve, key)), f"broker.curve.{key}",
                 "must be set when CURVE is enabled")
    _require(bool(workers.curve_secret_key_file) or not workers.curve_server_key_file,
             "workers.curve_secret_key_file", "must be set with workers.curve_server_key_file")
    old = schp.bf16
    _require(old is None or schp.precision in ("auto", "bf16" if old else "fp32"),
             "segmentation.schp.bf16",
             f"is {str(old).lower()} but segmentation.schp.precision (SCHP_PRECISION) is "
             f"{schp.precision}; SCHP_BF16 is deprecated: unset it and keep SCHP_PRECISION")
    for dataset in get_args(Dataset)[1:]:
        _require(dataset in schp.labels, f"segmentation.schp.labels.{dataset}", "is missing")


def _plain(settings: Settings) -> dict[str, Any]:
    """``settings`` as the mapping a config file would hold."""
    raw = dataclasses.asdict(settings)
    del raw["base_dir"]
    return raw


def _read_yaml(path: Path) -> dict[str, Any]:
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


def _merged(base: dict[str, Any], override: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``override`` over ``base``, section by section; an empty section (a key
    whose settings are all commented out) keeps the base's."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(out.get(key), dict):
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{prefix}{key}: must be a mapping")
            value = _merged(out[key], value or {}, f"{prefix}{key}.")
        out[key] = value
    return out


def _parse_env_value(value: str) -> Any:
    """Environment strings are parsed as YAML scalars: '5' -> 5, 'true' -> True."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, (str, int, float, bool)) or parsed is None else value


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Section ``cls`` from a mapping holding every one of its settings."""
    names = [f.name for f in dataclasses.fields(cls) if prefix + f.name in SPECS]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown setting")
    return cls(**{n: _coerce(SPECS[prefix + n], raw[n], prefix + n) for n in names})


#: Scalar type -> (the Python types a YAML value may have, what the error asks for).
_SCALARS: dict[type, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"), int: ((int,), "a whole number"),
    float: ((int, float), "a number"), str: ((str, int, float), "a string")}


def _coerce(spec: _Spec, value: Any, name: str) -> Any:
    """``value`` checked against the type and rules of setting ``name``."""
    kind = spec.kind
    if value is None:
        _require(spec.optional, name, "must be set")
        return None
    if _is_section(kind):
        return _build(kind, value, name + ".")
    if kind is LabelSet:
        return _label_set(value, name)
    if get_origin(kind) is Mapping:
        return {str(key): _label_set(parts, f"{name}.{key}") for key, parts in value.items()}
    if get_origin(kind) is Literal:
        words = get_args(kind)
        _require(value in words, name, f"must be one of {', '.join(words)}, got {value!r}")
    else:
        types, wanted = _SCALARS[kind]
        _require(isinstance(value, types) and (kind is bool or not isinstance(value, bool)),
                 name, f"must be {wanted}, got {value!r}")
        _require(kind is not float or math.isfinite(value), name,
                 f"must be a finite number, got {value!r}")
        value = kind(value)
    for rule in spec.rules:
        _require(rule.test(value), name, rule.message.format(value))
    return value


def _label_set(parts: Any, name: str) -> LabelSet:
    if not isinstance(parts, dict) or set(parts) != {"upper", "lower"}:
        raise ConfigError(f"{name}: must have exactly 'upper' and 'lower' label lists")
    for part in ("upper", "lower"):
        ids = parts[part]
        if not isinstance(ids, (list, tuple)) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 256 for i in ids):
            raise ConfigError(f"{name}.{part}: must be a list of label ids 0-255")
    return LabelSet(upper=tuple(parts["upper"]), lower=tuple(parts["lower"]))


def _require(ok: bool, name: str, message: str) -> None:
    """Refuse setting ``name`` (shown with its environment variable) unless ``ok``."""
    if not ok:
        env = SPECS[name].env if name in SPECS else None
        raise ConfigError(f"{name} ({env}): {message}" if env else f"{name}: {message}")
