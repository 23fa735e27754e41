"""The read-only endpoints: GET /health, /stats, /metrics, /jobs/{job_id} and /openapi.json.

Each asks the broker (one request, bounded by ``broker_timeout_s``) and shapes
its reply; none of them changes anything. /health answers even when the broker
does not (503, ``status: degraded``, with a ``detail``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.ids import is_valid_id
from common.logs import event
from frontend import errors
from frontend.base import JsonHandler
from frontend.broker_client import BrokerClient, BrokerUnavailable
from frontend.errors import ApiError
from frontend.inflight import InFlight
from frontend.metrics import FrontendCounters, render
from frontend.stats_view import health_body, stats_body, unreachable_health
from frontend.uploads import ID_RULE

log = logging.getLogger(__name__)

#: Job record fields kept from clients: server paths are internal.
HIDDEN_JOB_FIELDS = ("image_path",)

#: Record fields of free text, in which a server path is replaced by :data:`TEMP_FOLDER_NAME`.
TEXT_JOB_FIELDS = ("reason", "detail")

#: What clients see instead of the TEMP_FOLDER path in a failure's text.
TEMP_FOLDER_NAME = "TEMP_FOLDER"


class _BrokerReadHandler(JsonHandler):
    """A GET endpoint answered from one broker request."""

    SUPPORTED_METHODS = ("GET",)

    def _init_broker(self, inflight: InFlight, broker: BrokerClient) -> None:
        super().initialize(inflight)
        self.broker = broker

    initialize: Callable[..., None] = _init_broker


class HealthHandler(_BrokerReadHandler):
    """GET /health: ``ok`` (200) while a worker and the uploader are alive, else
    ``degraded`` (503)."""

    async def get(self) -> None:
        try:
            stats = await self.broker.stats()
        except BrokerUnavailable as exc:
            event(log, "health_degraded", logging.WARNING, detail=str(exc))
            self.set_header("Retry-After", str(errors.BROKER_RETRY_AFTER_S))
            self.write_json(unreachable_health(str(exc)), 503)
            return
        status, body = health_body(stats)
        self.write_json(body, status)


class StatsHandler(_BrokerReadHandler):
    """GET /stats: the broker's counters, passed through."""

    async def get(self) -> None:
        try:
            stats = await self.broker.stats()
        except BrokerUnavailable as exc:
            raise errors.broker_unavailable(exc) from None
        self.write_json(stats_body(stats))


class MetricsHandler(_BrokerReadHandler):
    """GET /metrics: Prometheus text format, from the broker's stats (see frontend.metrics).

    A silent broker still gets 200, with ``qmc_broker_up 0`` and the front end's own
    figures: the scrape itself worked, and an alert on ``qmc_broker_up`` says the rest.
    """

    def initialize(self, inflight: InFlight, broker: BrokerClient,
                   counters: FrontendCounters) -> None:
        super().initialize(inflight, broker)
        self.counters = counters

    async def get(self) -> None:
        try:
            stats: dict[str, Any] | None = await self.broker.stats()
        except BrokerUnavailable as exc:
            event(log, "metrics_broker_unavailable", logging.WARNING, detail=str(exc))
            stats = None
        body, content_type = render(stats, self.counters, self.request.headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.finish(body)


class JobHandler(_BrokerReadHandler):
    """GET /jobs/{job_id}: the broker's record of one job (404 if unknown)."""

    def initialize(self, inflight: InFlight, broker: BrokerClient,
                   api_key: str | None, temp_folder: Path | None = None) -> None:
        super().initialize(inflight, broker)
        self.api_key, self.temp_folder = api_key, temp_folder

    async def get(self, job_id: str) -> None:
        self.check_api_key(self.api_key)
        if not is_valid_id(job_id):
            raise ApiError(400, f"job_id is invalid: it must be {ID_RULE}", kind="invalid_id")
        try:
            record = await self.broker.job(job_id)
        except BrokerUnavailable as exc:
            raise errors.broker_unavailable(exc) from None
        if record is None:
            raise ApiError(404, f"no job with job_id {job_id}", kind="unknown_job")
        self.write_json(public_record(job_id, record, self.temp_folder))


class OpenApiHandler(JsonHandler):
    """GET /openapi.json: the API's OpenAPI 3 document."""

    SUPPORTED_METHODS = ("GET",)

    def initialize(self, inflight: InFlight, document: dict[str, Any]) -> None:
        super().initialize(inflight)
        self.document = document

    def get(self) -> None:
        self.write_json(self.document)


def public_record(job_id: str, record: dict[str, Any],
                  temp_folder: Path | None = None) -> dict[str, Any]:
    """The broker's job record as clients see it: internal fields dropped, and the
    ``temp_folder`` path written as ``TEMP_FOLDER`` in failure texts (a worker's or the
    broker's message, e.g. "cannot write masks under /srv/tmp/jobs/j1: No space left")."""
    body = {key: value for key, value in record.items() if key not in HIDDEN_JOB_FIELDS}
    body.setdefault("job_id", job_id)
    if temp_folder is not None:
        for key in TEXT_JOB_FIELDS:
            if isinstance(body.get(key), str):
                body[key] = body[key].replace(str(temp_folder), TEMP_FOLDER_NAME)
    return body
