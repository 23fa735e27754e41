"""schemathesis against the REAL running service (broker, worker, uploader behind the
front end), for a bounded number of generated requests per operation: no answer may
be a 5xx, every answer must match the published document, and the service is still
healthy afterwards."""

from __future__ import annotations

import dataclasses

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from common.config import ServerSettings
from frontend.openapi import build_document
from tests.faults.kit import FUZZED
from tests.support.trees import service_fixture

#: Generated requests per operation (derandomized: the same ones on every run).
MAX_EXAMPLES = 30


real_service = service_fixture("real_service", "module", workers=1, MAX_UPLOAD_MB="1")


# The document the real service serves for these settings (checked below), built here
# because schemathesis needs it when tests are collected.
SERVER = ServerSettings(host="127.0.0.1", max_upload_mb=1.0)
schema = schemathesis.openapi.from_dict(build_document(SERVER))


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_real_service_conforms_and_never_fails(case, real_service):
    FUZZED.append(f"{case.method} {case.path}")
    # positive_data_acceptance is left out: a schema-valid ``format: binary`` is rarely a
    # decodable photo of at least 16x16 pixels, which JSON Schema cannot express.
    case.call_and_validate(base_url=real_service.url,
                           excluded_checks=[positive_data_acceptance])


def test_real_service_is_healthy_after_fuzzing(real_service):
    # the same document, but for the port this service listens on (its ``servers`` entry)
    served_settings = dataclasses.replace(SERVER, port=real_service.port)
    assert real_service.get("/openapi.json").json() == build_document(served_settings)
    assert all(p.poll() is None for p in real_service.procs.values())
    assert real_service.get("/health").json()["status"] == "ok"
