"""The strict multipart/form-data parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frontend.multipart import FormError, boundary_of, parse_form_data, parse_header_value
from tests.support import forms

B = forms.BOUNDARY.encode()


def test_parses_text_and_file_parts():
    body = forms.body(forms.part("a", "1"), forms.part("f", b"\x00\xffbin\r\n", filename="x.png",
                                                       content_type="image/png"))
    a, f = parse_form_data(B, body, 10)
    assert (a.name, a.filename, a.body) == ("a", None, b"1")
    assert (f.name, f.filename, f.content_type, f.body) == ("f", "x.png", "image/png",
                                                            b"\x00\xffbin\r\n")


def test_preamble_and_epilogue_are_ignored():
    body = b"preamble\r\n" + forms.body(forms.part("a", "1")) + b"epilogue"
    assert [p.body for p in parse_form_data(B, body, 10)] == [b"1"]


def test_empty_value_is_kept():
    [part] = parse_form_data(B, forms.body(forms.part("a", "")), 10)
    assert part.body == b""


@pytest.mark.parametrize("count, ok", [(10, True), (11, False), (100, False)])
def test_part_count_is_bounded(count, ok):
    body = forms.body(*[forms.part(f"p{i}", "v") for i in range(count)])
    if ok:
        assert len(parse_form_data(B, body, 10)) == count
    else:
        with pytest.raises(FormError, match="more than 10 parts"):
            parse_form_data(B, body, 10)


@pytest.mark.parametrize("body, message", [
    (forms.body(forms.part("a", "1"), close=False), "closing boundary"),
    (b"", "closing boundary"),
    (b"--" + B + b"--\r\n", "no parts"),
    (b"junk--" + B + b"\r\n" + forms.part("a", "1") + b"\r\n--" + B + b"--", "start with"),
    (forms.body(b"Content-Disposition: form-data; name=\"a\"\r\nvalue"), "blank line"),
    (forms.body(b"X-Thing: 1\r\n\r\nv"), "Content-Disposition"),
    (forms.body(b"Content-Disposition: attachment; name=\"a\"\r\n\r\nv"), "form-data"),
    (forms.body(b"Content-Disposition: form-data\r\n\r\nv"), "form-data"),
    (forms.body(b"Content-Disposition: form-data; name=\"\xff\"\r\n\r\nv"), "UTF-8"),
    (forms.body(b"no colon here\r\n\r\nv"), "malformed"),
    (forms.body(b"Content-Disposition: form-data; name=a\r\n"
                b"Content-Disposition: form-data; name=b\r\n\r\nv"), "repeated"),
    (forms.body(b"Content-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nv"), "repeated"),
    (forms.body(b"Content-Disposition: form-data; name=\"a\r\n\r\nv"), "malformed"),
])
def test_malformed_bodies_are_refused_with_a_reason(body, message):
    with pytest.raises(FormError, match=message):
        parse_form_data(B, body, 10)


def test_header_values():
    assert parse_header_value('form-data; name="a;b"; filename="c\\"d.jpg"') == (
        "form-data", {"name": "a;b", "filename": 'c"d.jpg'})
    assert parse_header_value("Multipart/Form-Data; Boundary=xyz") == (
        "multipart/form-data", {"boundary": "xyz"})
    with pytest.raises(FormError):
        parse_header_value("form-data; name")


def test_boundary_rules():
    assert boundary_of('multipart/form-data; boundary="quoted b"') == b"quoted b"
    for bad in ("multipart/form-data", "multipart/form-data; boundary=",
                "multipart/form-data; boundary=" + "x" * 71,
                "multipart/form-data; boundary=\"é\""):
        with pytest.raises(FormError):
            boundary_of(bad)


# -- properties -------------------------------------------------------------------

_names = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'),
                 min_size=1, max_size=20)


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(st.binary(max_size=400))
def test_any_bytes_either_parse_or_raise_form_error(noise):
    for body in (noise, forms.body(noise), forms.body(forms.part("a", noise)) + noise,
                 b"--" + B + b"\r\n" + noise + b"\r\n--" + B + b"--"):
        try:
            parse_form_data(B, body, 10)
        except FormError:
            pass


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(st.lists(st.tuples(_names, st.binary(max_size=64)), min_size=1, max_size=10))
def test_encoded_forms_parse_back(fields):
    body = forms.body(*(forms.part(name.encode(), value) for name, value in fields))
    parsed = parse_form_data(B, body, 10)
    assert [(p.name, p.body) for p in parsed] == fields
