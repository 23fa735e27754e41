import pytest

from tests.support.service import ServiceTree


@pytest.fixture
def service(tmp_path):
    """The whole service (broker, uploader, 2 parser workers, front end) + receiver."""
    tree = ServiceTree(tmp_path)
    try:
        yield tree.start_all()
    finally:
        tree.close()
