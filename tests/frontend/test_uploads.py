"""The POST /process form rules, without HTTP."""

from __future__ import annotations

import pytest

from frontend.errors import ApiError
from frontend.uploads import form_boundary, read_process_form
from tests.frontend import photos
from tests.support import forms

B = forms.BOUNDARY.encode()


def _status(fn, *args) -> int:
    with pytest.raises(ApiError) as caught:
        fn(*args)
    return caught.value.status


def test_content_types():
    assert form_boundary(forms.content_type()) == B
    assert form_boundary('Multipart/Form-Data; charset=utf-8; boundary="x y"') == b"x y"
    for wrong in (None, "", "text/plain", "multipart/mixed; boundary=a"):
        assert _status(form_boundary, wrong) == 415, wrong
    # multipart/form-data without a readable boundary is a bad form (docs/api.md: 400)
    for no_boundary in ("multipart/form-data", "multipart/form-data;;",
                        "multipart/form-data; boundary=a; boundary=b"):
        assert _status(form_boundary, no_boundary) == 400, no_boundary


def test_valid_form_defaults_provider():
    image = photos.jpeg()
    form = read_process_form(B, forms.body(*forms.process_parts(image, job_id="j:1.a_b-c")))
    assert (form.job_id, form.user_id, form.provider, form.image) == ("j:1.a_b-c", "user-1",
                                                                      "qwen", image)


def test_first_problem_is_reported_with_its_field():
    parts = forms.process_parts(b"", job_id="../x")
    with pytest.raises(ApiError) as caught:
        read_process_form(B, forms.body(*parts))
    assert (caught.value.status, caught.value.kind) == (400, "invalid_id")
    assert "job_id" in caught.value.message
