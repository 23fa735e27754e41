"""Property-based fuzzing of the published OpenAPI document with schemathesis.

Every operation gets generated requests, valid and invalid (bounded by
:data:`MAX_EXAMPLES`, derandomized so CI runs are repeatable). With a healthy
stub broker behind it, the front end must never answer 5xx, and every answer
must match the document (status codes, content types, JSON schemas, headers).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from common.config import ServerSettings
from frontend.openapi import build_document
from tests.frontend.live_server import LiveFrontend
from tests.support.stub_broker import StubBroker

#: Generated requests per operation.
MAX_EXAMPLES = 100

SERVER = ServerSettings(host="127.0.0.1", broker_timeout_s=3.0, max_upload_mb=1.0)

schema = schemathesis.openapi.from_dict(build_document(SERVER))


@pytest.fixture(scope="module")
def live_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    # a queue that never fills: every generated photo that decodes is accepted
    with StubBroker(folder, max_size=100_000) as stub:
        stub.add_worker("w0", takes_jobs=False)
        stub.add_uploader()
        stub.submit("known-job")
        with LiveFrontend(SERVER, stub.front_endpoint, folder) as url:
            yield url


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_fails(case, live_url):
    # positive_data_acceptance is left out: a schema-valid ``format: binary`` is rarely a
    # decodable photo of at least 16x16 pixels, which JSON Schema cannot express.
    case.call_and_validate(base_url=live_url, excluded_checks=[positive_data_acceptance])
