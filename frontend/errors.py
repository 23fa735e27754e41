"""The exception that carries a client-facing error out of any handler.

Every error response of the API is ``{"error": "<message>"}`` with the status
and extra headers (``Retry-After``) of an :class:`ApiError`; the one
``write_error`` in :mod:`frontend.base` turns it into the response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tornado.web import HTTPError

if TYPE_CHECKING:
    from frontend.broker_client import BrokerUnavailable

#: Seconds a client should wait before retrying when the queue is full.
QUEUE_FULL_RETRY_AFTER_S = 10

#: Seconds a client should wait before retrying when the broker does not answer.
BROKER_RETRY_AFTER_S = 5

#: Seconds a client should wait before retrying when no worker is alive (a restart
#: under supervisord takes seconds; an operator's fix takes longer).
NO_WORKER_RETRY_AFTER_S = 30

#: Seconds a client should wait before retrying when TEMP_FOLDER cannot be written.
STORAGE_RETRY_AFTER_S = 30


class ApiError(HTTPError):
    """A request that ends with ``status`` and ``{"error": message}``.

    ``kind`` is a short machine-readable word, logged as the rejection's
    ``reason`` (``queue_full``, ``bad_form``, ...); ``retry_after`` (seconds)
    becomes a ``Retry-After`` header. (Not named ``reason``: on an HTTPError
    that is the status line's phrase.)
    It is a Tornado ``HTTPError``, so raising it anywhere in a handler ends the
    request with ``status`` instead of a 500.
    """

    def __init__(self, status: int, message: str, kind: str = "rejected",
                 retry_after: int | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.message = message
        self.kind = kind
        self.retry_after = retry_after


def broker_unavailable(exc: BrokerUnavailable) -> ApiError:
    """The 503 for a broker that could not be reached or did not answer in time."""
    return ApiError(503, f"the job queue is unavailable: {exc}; retry later",
                    kind="broker_timeout" if exc.timed_out else "broker_unreachable",
                    retry_after=BROKER_RETRY_AFTER_S)
