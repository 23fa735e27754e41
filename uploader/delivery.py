"""One job's delivery to the Mask Asset Service: the signed multipart request,
the classification of its answer, and the retry policy around it.

Transient failures (connection errors, timeouts, 408, 429, 5xx) are retried
``upload.retries`` times after the first attempt, waiting ``unit x 1, 2, 4, 8,
16...`` plus jitter, or longer when a 429/503 carries ``Retry-After``. The
time unit is ``upload.backoff_base_s``: 1.0 in production (real seconds, so
``Retry-After`` is honoured as sent), small in tests so they run fast. Any
other answer (2xx, or a 4xx such as 400/401/403/404/413/422) ends the
delivery at once.

Nothing here touches the disk or the broker; callers observe attempts through
:class:`DeliveryHooks`. No text produced here contains the shared secret.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import tenacity
import urllib3
from urllib3.filepost import choose_boundary, encode_multipart_formdata

from common.config import UploadSettings
from common.logs import redact, register_secret

from .signing import SIGNATURE_HEADER, sign

#: Upper bound on an honoured Retry-After, in time units (seconds in production).
RETRY_AFTER_CAP = 60.0
#: Bytes of a response body kept for logs, states and dead letters.
BODY_KEEP_BYTES = 2048
#: Statuses answered to a 429/503 whose Retry-After is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})
#: Non-5xx statuses that are worth another attempt.
TRANSIENT_4XX = frozenset({408, 429})
#: Transport failures that are worth another attempt (SSLError is a ConnectionError).
TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError)


class Interrupted(Exception):
    """The uploader is stopping: a retry wait was cut short. The job stays spooled."""


@dataclass(frozen=True)
class AttemptOutcome:
    """What one HTTP attempt produced: a status (and body) or a transport error."""
    number: int
    status: int | None
    body: str = ""
    error: str | None = None
    retry_after: float | None = None
    elapsed_s: float = 0.0
    #: the request could not be made at all (bad URL or header): never retried
    unsendable: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        """True when another attempt may succeed."""
        if self.status is None:
            return not self.unsendable
        return self.status in TRANSIENT_4XX or 500 <= self.status < 600

    def describe(self) -> str:
        """One line for logs and states, e.g. ``HTTP 503: busy``."""
        if self.status is None:
            return self.error or "transport error"
        return f"HTTP {self.status}: {self.body}" if self.body else f"HTTP {self.status}"

    def record(self) -> dict[str, Any]:
        """The outcome as a plain map (for the spool manifest)."""
        return {"n": self.number, "status": self.status, "body": self.body,
                "error": self.error, "elapsed_s": round(self.elapsed_s, 3), "at": time.time()}


@dataclass(frozen=True)
class DeliveryResult:
    """The end of a delivery: delivered (``ok``) or failed with ``reason``."""
    ok: bool
    last: AttemptOutcome
    reason: str | None = None
    detail: str | None = None


class DeliveryHooks:
    """Callbacks around attempts; the default ones do nothing."""

    def attempt_started(self, job_id: str, number: int) -> None:
        """Attempt ``number`` (1-based, counted over the job's whole life) begins."""

    def attempt_finished(self, job_id: str, outcome: AttemptOutcome) -> None:
        """An attempt produced ``outcome`` (before any retry wait)."""

    def retry_scheduled(self, job_id: str, outcome: AttemptOutcome, wait_s: float) -> None:
        """A transient ``outcome`` will be retried after ``wait_s`` seconds."""


class _Transient(Exception):
    def __init__(self, outcome: AttemptOutcome):
        super().__init__(outcome.describe())
        self.outcome = outcome


def _failed_attempt(retry_state: tenacity.RetryCallState) -> AttemptOutcome:
    """The outcome of the attempt that tenacity is about to retry (only _Transient is)."""
    failure = retry_state.outcome.exception() if retry_state.outcome else None
    if not isinstance(failure, _Transient):
        raise TypeError(f"retried on something other than a transient outcome: {failure!r}")
    return failure.outcome


def encode_body(job: Mapping[str, Any], files: Mapping[str, bytes]) -> tuple[bytes, str]:
    """The multipart/form-data body (bytes exactly as sent and signed) and its
    Content-Type. ``files`` maps mask names to PNG bytes; seg_map is optional."""
    fields: list[tuple[str, Any]] = [(k, str(job[k])) for k in ("job_id", "user_id", "provider")]
    for name, data in files.items():
        fields.append((name, (f"{name}.png", data, "image/png")))
    boundary = choose_boundary()
    # a boundary must not occur inside a part; with 128 random bits this loop is for rigour
    while any(boundary.encode() in data for data in files.values()):
        boundary = choose_boundary()
    return encode_multipart_formdata(fields, boundary=boundary)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date),
    capped at :data:`RETRY_AFTER_CAP`; None when absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


class RetryPolicy:
    """Waits between attempts, in seconds, for the settings' time unit."""

    def __init__(self, upload: UploadSettings, rng: random.Random | None = None):
        self.unit = upload.backoff_base_s
        self.jitter = upload.backoff_jitter_s
        self.retries = upload.retries
        self._rng = rng or random.Random()

    def wait_s(self, failed_attempt: int, retry_after: float | None = None) -> float:
        """Wait after attempt ``failed_attempt`` (1-based) failed transiently:
        ``unit x 2**(n-1)``, or the (capped) Retry-After when longer, plus
        ``uniform(0, jitter) x unit``."""
        nominal = 2.0 ** (max(failed_attempt, 1) - 1)
        if retry_after is not None:
            nominal = max(nominal, min(retry_after, RETRY_AFTER_CAP))
        return self.unit * (nominal + self._rng.uniform(0.0, self.jitter))


class Deliverer:
    """Sends jobs to ``upload.url`` with the retry policy. Thread-safe: each
    thread gets its own ``requests.Session`` (keep-alive connections)."""

    def __init__(self, upload: UploadSettings, sleep: Callable[[float], None] = time.sleep,
                 policy: RetryPolicy | None = None):
        if not upload.url or not upload.secret:
            raise ValueError("upload.url and upload.secret are required")
        register_secret(upload.secret)
        self.upload = upload
        self.url, self.secret = upload.url, upload.secret
        self.policy = policy or RetryPolicy(upload)
        self._sleep = sleep
        self._local = threading.local()

    def deliver(self, job: Mapping[str, Any], files: Mapping[str, bytes],
                hooks: DeliveryHooks | None = None, attempts_before: int = 0,
                max_attempts: int | None = None) -> DeliveryResult:
        """Deliver one job; returns when it is delivered or has failed finally.

        ``attempts_before`` continues the attempt count (and the backoff) of a
        job resumed from the spool; ``max_attempts`` (default ``retries + 1``
        minus the earlier attempts, at least 1) bounds this call. Raises
        :class:`Interrupted` when the sleep function does.
        """
        hooks = hooks or DeliveryHooks()
        job_id = str(job["job_id"])
        body, content_type = encode_body(job, files)
        if max_attempts is None:
            max_attempts = max(1, self.policy.retries + 1 - attempts_before)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max_attempts),
            retry=tenacity.retry_if_exception_type(_Transient),
            wait=lambda rs: self._wait(rs, attempts_before),
            sleep=self._sleep, reraise=True,
            before_sleep=lambda rs: hooks.retry_scheduled(
                job_id, _failed_attempt(rs), rs.upcoming_sleep))
        try:
            for attempt in retrying:
                with attempt:
                    number = attempts_before + attempt.retry_state.attempt_number
                    hooks.attempt_started(job_id, number)
                    outcome = self._attempt(job_id, body, content_type, number)
                    hooks.attempt_finished(job_id, outcome)
                    if not outcome.ok and outcome.transient:
                        raise _Transient(outcome)
        except _Transient as exc:
            return DeliveryResult(False, exc.outcome, "upload_retries_exhausted",
                                  f"{exc.outcome.number} attempts; last: {exc.outcome.describe()}")
        if outcome.ok:
            return DeliveryResult(True, outcome)
        reason = ("upload_request_error" if outcome.status is None
                  else f"upload_rejected_{outcome.status}")
        return DeliveryResult(False, outcome, reason, outcome.describe())

    def _wait(self, retry_state: tenacity.RetryCallState, attempts_before: int) -> float:
        outcome = _failed_attempt(retry_state)
        retry_after = outcome.retry_after if outcome.status in RETRY_AFTER_STATUSES else None
        return self.policy.wait_s(attempts_before + retry_state.attempt_number, retry_after)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # proxies / CA bundles from the environment would bypass the settings
            session.trust_env = False
            self._local.session = session
        return session

    def _attempt(self, job_id: str, body: bytes, content_type: str, number: int) -> AttemptOutcome:
        """One POST; never raises for HTTP or transport failures."""
        up = self.upload
        headers = {"Content-Type": content_type, "X-Internal-Auth": self.secret,
                   "Idempotency-Key": job_id, SIGNATURE_HEADER: sign(self.secret, body)}
        started = time.monotonic()
        try:
            with self._session().post(self.url, data=body, headers=headers, stream=True,
                                      timeout=(up.connect_timeout_s, up.read_timeout_s),
                                      verify=up.ca_bundle or True, allow_redirects=False) as resp:
                return AttemptOutcome(
                    number, resp.status_code, _read_head(resp),
                    retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                    elapsed_s=time.monotonic() - started)
        except TRANSIENT_ERRORS as exc:
            return AttemptOutcome(number, None, error=_error_text(exc),
                                  elapsed_s=time.monotonic() - started)
        except requests.RequestException as exc:
            # a request that cannot be made at all (bad URL, bad header): final
            return AttemptOutcome(number, None, error=_error_text(exc), unsendable=True,
                                  elapsed_s=time.monotonic() - started)


def _read_head(resp: requests.Response) -> str:
    """The first :data:`BODY_KEEP_BYTES` of the body, cleaned. The status line
    already decided the outcome, so a body that breaks off reads as empty."""
    try:
        data = resp.raw.read(BODY_KEEP_BYTES, decode_content=True) or b""
    except (urllib3.exceptions.HTTPError, OSError):
        return ""
    return _clean(data.decode("utf-8", "replace"))


def _clean(text: str) -> str:
    """A response body fit for one log field: redacted, whitespace collapsed."""
    return redact(" ".join(text.split()))[:BODY_KEEP_BYTES]


def _error_text(exc: BaseException) -> str:
    """``Type: message`` of a transport error, with every registered secret removed."""
    return _clean(f"{type(exc).__name__}: {exc}")[:500]
