import pytest

from common.ids import MAX_ID_LENGTH, is_valid_id


@pytest.mark.parametrize("value", ["job-1", "a", "550e8400-e29b-41d4-a716-446655440000",
                                   "user_42.v2", "tenant:7", "x" * MAX_ID_LENGTH])
def test_accepted_ids(value):
    assert is_valid_id(value)


@pytest.mark.parametrize("value", ["", "../../etc/passwd", "a/b", "a..b", ".hidden", "-x",
                                   "x" * (MAX_ID_LENGTH + 1), "x" * 10_000, "a\x00b", "caf\u00e9",
                                   "a b", "a\nb"])
def test_refused_ids(value):
    assert not is_valid_id(value)
