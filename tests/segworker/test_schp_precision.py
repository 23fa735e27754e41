"""Which precision and backend SCHP runs with, and why (pure rules), plus the
settings that feed them: SCHP_PRECISION, SCHP_BACKEND and the deprecated SCHP_BF16."""

from __future__ import annotations

import logging

import pytest
import torch

from common.config import ConfigError, load_settings
from segworker.engine import EngineLoadError
from segworker.precision import choose_precision, cpu_flags
from segworker.schp import engine as schp_engine
from segworker.schp.precision import choose_backend, requested_precision

XEON_FLAGS = {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
ZEN4_FLAGS = {"avx512f", "avx512_bf16"}
OLD_FLAGS = {"avx2", "avx512f"}


@pytest.mark.parametrize("flags,expected", [(XEON_FLAGS, "bf16"), (ZEN4_FLAGS, "bf16"),
                                            (OLD_FLAGS, "fp32"), (set(), "fp32")])
def test_auto_on_cpu_is_bf16_only_with_bf16_matrix_units(flags, expected):
    chosen = choose_precision("auto", "cpu", cpu_flags=flags)
    assert chosen.value == expected
    assert chosen.because.startswith("SCHP_PRECISION=auto and the CPU has")
    if expected == "bf16":
        assert "avx512_bf16" in chosen.because
    else:
        assert "no bf16 matrix units" in chosen.because


@pytest.mark.parametrize("capability,expected", [((9, 0), "bf16"), ((8, 0), "bf16"),
                                                 ((7, 5), "fp32"), (None, "fp32")])
def test_auto_on_cuda_is_bf16_from_ampere_on(capability, expected):
    chosen = choose_precision("auto", "cuda", cuda_capability=capability)
    assert chosen.value == expected and "GPU" in chosen.because


@pytest.mark.parametrize("asked", ["fp32", "bf16"])
def test_an_explicit_precision_is_used_as_it_is(asked):
    for device, flags in (("cpu", OLD_FLAGS), ("cpu", XEON_FLAGS), ("cuda", ())):
        chosen = choose_precision(asked, device, cpu_flags=flags, cuda_capability=(7, 0))
        assert (chosen.value, chosen.because) == (asked, f"SCHP_PRECISION={asked}")


def test_the_deprecated_bf16_switch_maps_to_a_precision_with_a_notice():
    assert requested_precision("auto", None) == ("auto", None)
    assert requested_precision("fp32", None) == ("fp32", None)
    for old, new in ((True, "bf16"), (False, "fp32")):
        requested, note = requested_precision("auto", old)
        assert requested == new
        assert "deprecated" in note and f"SCHP_PRECISION={new}" in note


def test_backend_choice():
    assert choose_backend("auto", "cpu", True).value == "openvino"
    assert choose_backend("auto", "cuda", True).value == "eager"
    auto_without = choose_backend("auto", "cpu", False)
    assert auto_without.value == "eager" and "cannot be imported" in auto_without.because
    assert choose_backend("eager", "cpu", True).because == "SCHP_BACKEND=eager"
    assert choose_backend("openvino", "cpu", True).because == "SCHP_BACKEND=openvino"
    with pytest.raises(ValueError, match="CPU only"):
        choose_backend("openvino", "cuda", True)
    with pytest.raises(ValueError, match="cannot be imported"):
        choose_backend("openvino", "cpu", False)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu avx512f amx_bf16 avx512_bf16\n")
    assert cpu_flags(info) == {"fpu", "avx512f", "amx_bf16", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_settings_accept_the_new_names_and_refuse_bad_values():
    schp = load_settings(environ={}).segmentation.schp
    assert (schp.precision, schp.backend, schp.bf16) == ("auto", "auto", None)
    schp = load_settings(environ={"SCHP_PRECISION": "bf16", "SCHP_BACKEND": "eager"})
    assert (schp.segmentation.schp.precision, schp.segmentation.schp.backend) == ("bf16", "eager")
    with pytest.raises(ConfigError, match=r"segmentation.schp.precision \(SCHP_PRECISION\)"):
        load_settings(environ={"SCHP_PRECISION": "fp16"})
    with pytest.raises(ConfigError, match=r"segmentation.schp.backend \(SCHP_BACKEND\)"):
        load_settings(environ={"SCHP_BACKEND": "tensorrt"})


def test_a_bf16_switch_that_contradicts_the_precision_stops_start_up():
    assert load_settings(environ={"SCHP_BF16": "true"}).segmentation.schp.bf16 is True
    assert load_settings(environ={"SCHP_BF16": "true", "SCHP_PRECISION": "bf16"})
    with pytest.raises(ConfigError, match=r"SCHP_BF16.*is true but.*SCHP_PRECISION.*fp32"):
        load_settings(environ={"SCHP_BF16": "true", "SCHP_PRECISION": "fp32"})


@pytest.mark.parametrize("old,expected", [(True, "bf16"), (False, "fp32")])
def test_the_old_name_still_works_and_logs_a_deprecation(old, expected, caplog):
    caplog.set_level(logging.INFO, logger="segworker.schp.engine")
    precision, _backend = schp_engine.choose_runtime("auto", old, "eager", torch.device("cpu"))
    assert precision.value == expected
    assert precision.because == f"SCHP_BF16={str(old).lower()} (deprecated)"
    logged = [r.fields for r in caplog.records if getattr(r, "event", "") == "setting_deprecated"]
    assert logged and logged[0]["setting"] == "SCHP_BF16"
    assert f"SCHP_PRECISION={expected}" in logged[0]["message"]


def test_runtime_on_this_machine_follows_its_cpu_flags(monkeypatch):
    monkeypatch.setattr(schp_engine, "cpu_flags", lambda: frozenset(OLD_FLAGS))
    precision, backend = schp_engine.choose_runtime("auto", None, "auto", torch.device("cpu"))
    assert precision.value == "fp32" and backend.value == "openvino"
    monkeypatch.setattr(schp_engine, "cpu_flags", lambda: frozenset(XEON_FLAGS))
    precision, _ = schp_engine.choose_runtime("auto", None, "auto", torch.device("cpu"))
    assert precision.value == "bf16" and "amx_bf16" in precision.because


def test_an_impossible_backend_is_an_engine_load_error(monkeypatch):
    monkeypatch.setattr(schp_engine, "_openvino_importable", lambda: False)
    with pytest.raises(EngineLoadError, match="openvino package cannot be imported"):
        schp_engine.choose_runtime("fp32", None, "openvino", torch.device("cpu"))


def test_the_parsers_precision_follows_the_same_rule_under_its_own_name():
    amx = choose_precision("auto", "cpu", cpu_flags=XEON_FLAGS, setting="PARSER_PRECISION")
    old = choose_precision("auto", "cpu", cpu_flags=OLD_FLAGS, setting="PARSER_PRECISION")
    assert (amx.value, old.value) == ("bf16", "fp32")
    assert amx.because.startswith("PARSER_PRECISION=auto") and "SCHP" not in amx.because + old.because
    assert choose_precision("fp32", "cpu", setting="PARSER_PRECISION").because == "PARSER_PRECISION=fp32"
