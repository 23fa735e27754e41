"""The OpenAPI 3 document served at GET /openapi.json.

Built from the running settings, so the documented limits (upload size, pixel
count) and the API-key requirement are the ones in force.
"""

from __future__ import annotations

from typing import Any

from common.config import ServerSettings
from common.ids import MAX_ID_LENGTH, PROVIDERS
from common.photo import ACCEPTED_FORMATS
from common.wire import STATES
from frontend.base import API_KEY_HEADER
from frontend.stats_view import STATS_KEYS
from frontend.uploads import DEFAULT_PROVIDER, MAX_PARTS

#: OpenAPI version of the document.
OPENAPI_VERSION = "3.0.3"

#: Version of the HTTP API itself (bumped on any incompatible change).
API_VERSION = "1.0.0"

_ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
              "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
              "description": "Letters, digits, _ . : - ; starts with a letter or digit; no '..'."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": _ref(schema)}}}
    if retry_after:
        response["headers"] = {"Retry-After": {
            "description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
    return response


def _schemas() -> dict[str, Any]:
    nullable_int = {"type": "integer", "nullable": True}
    return {
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"}}},
        "Accepted": {"type": "object", "required": ["status", "queued", "job_id", "message"],
                     "properties": {"status": {"type": "string", "enum": ["accepted"]},
                                    "queued": {"type": "boolean"},
                                    "job_id": {"type": "string"},
                                    "message": {"type": "string"},
                                    "state": {"type": "string", "nullable": True}}},
        "Health": {"type": "object",
                   "required": ["status", "queue_size", "segmentation_ready", "engine", "workers"],
                   "properties": {"status": {"type": "string", "enum": ["ok", "degraded"]},
                                  "queue_size": nullable_int,
                                  "segmentation_ready": {"type": "boolean"},
                                  "engine": {"type": "string", "nullable": True},
                                  "workers": {"type": "integer"},
                                  "detail": {"type": "string"},
                                  "precision": {"type": "string", "enum": ["fp32", "bf16"]},
                                  "backend": {"type": "string", "enum": ["openvino", "eager"]},
                                  "precision_because": {"type": "string"},
                                  "backend_because": {"type": "string"}}},
        "Stats": {"type": "object", "required": list(STATS_KEYS), "additionalProperties": True,
                  "properties": {"queue_max": nullable_int, "queue_current": nullable_int,
                                 "workers": {"type": "integer", "nullable": True,
                                             "description": "Live workers."},
                                 "jobs_processed": nullable_int,
                                 "uptime_sec": {"type": "integer", "nullable": True,
                                                "description": "Whole seconds."}}},
        "JobRecord": {"type": "object", "required": ["job_id", "state"], "additionalProperties": True,
                      "properties": {"job_id": {"type": "string"},
                                     "state": {"type": "string", "enum": list(STATES)}}},
    }


def _process_operation(server: ServerSettings) -> dict[str, Any]:
    formats = ", ".join(ACCEPTED_FORMATS)
    form = {"type": "object", "required": ["user_image", "user_id", "job_id"],
            "properties": {"user_image": {"type": "string", "format": "binary",
                                          "description": f"The photo: {formats}."},
                           "user_id": _ID_SCHEMA, "job_id": _ID_SCHEMA,
                           "provider": {"type": "string", "enum": list(PROVIDERS),
                                        "default": DEFAULT_PROVIDER}}}
    return {
        "summary": "Queue a photo for mask generation",
        "description": (f"Body at most {server.max_upload_bytes} bytes, at most {MAX_PARTS} "
                        f"parts; photo {formats}, at most {server.max_image_pixels} pixels."),
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form}}},
        "responses": {
            "202": _json("Job queued (journalled by the broker).", "Accepted"),
            "200": _json("Job already known; not queued again.", "Accepted"),
            "400": _json("Malformed form, missing/repeated/invalid field, unknown provider.", "Error"),
            "401": _json("Missing or wrong X-API-Key (only when an API key is configured).", "Error"),
            "413": _json("Upload body or photo pixel count over the limit.", "Error"),
            "415": _json("Content-Type not multipart/form-data, or photo not JPEG/PNG.", "Error"),
            "422": _json("Photo truncated, corrupt or smaller than 16 pixels a side.", "Error"),
            "503": _json("Queue full, no worker alive for longer than NO_WORKER_GRACE_S, or "
                         "the queue (broker) unavailable.", "Error", True),
            "507": _json("No space left for the photo on the server.", "Error", True),
        },
    }


def _get(summary: str, responses: dict[str, Any], secured: bool = False,
         parameters: list | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if not secured:
        operation["security"] = []
    return operation


def build_document(server: ServerSettings) -> dict[str, Any]:
    """The whole OpenAPI document for ``server``'s limits and API-key setting."""
    job_param = {"name": "job_id", "in": "path", "required": True, "schema": _ID_SCHEMA}
    error_404 = _json("No such job.", "Error")
    paths = {
        "/process": {"post": _process_operation(server)},
        "/health": {"get": _get("Service health", {
            "200": _json("A worker and the uploader are alive.", "Health"),
            "503": _json("Degraded: no live worker, no uploader, or the broker does not "
                         "answer.", "Health", True)})},
        "/stats": {"get": _get("Queue and worker counters", {
            "200": _json("Counters from the broker.", "Stats"),
            "503": _json("The broker does not answer.", "Error", True)})},
        "/metrics": {"get": _get("Prometheus metrics (text format 0.0.4)", {
            "200": {"description": "Every metric (docs/metrics.md); qmc_broker_up 0 when the "
                                   "broker does not answer.",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}})},
        "/jobs/{job_id}": {"get": _get("One job's state", {
            "200": _json("The job's record.", "JobRecord"),
            "400": _json("Invalid job_id.", "Error"),
            "401": _json("Missing or wrong X-API-Key.", "Error"),
            "404": error_404,
            "503": _json("The broker does not answer.", "Error", True)},
            secured=True, parameters=[job_param])},
        "/openapi.json": {"get": _get("This document", {
            "200": {"description": "The OpenAPI document.",
                    "content": {"application/json": {"schema": {"type": "object"}}}}})},
    }
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Qwen Mask Component", "version": API_VERSION,
                 "description": "Upper/lower-body garment masks for virtual try-on."},
        "servers": [{"url": f"http://localhost:{server.port}",
                     "description": "this service on its configured PORT"}],
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
    if server.api_key is not None:
        document["components"]["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}}
        document["security"] = [{"ApiKey": []}]
    return document
