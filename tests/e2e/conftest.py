"""The whole service (broker, uploader, 2 parser workers, front end) and its receiver,
started afresh for each test."""

from tests.support.trees import service_fixture

service = service_fixture("service", workers=2)
