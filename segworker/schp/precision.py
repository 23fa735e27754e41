"""Which backend runs the SCHP forward pass, and the precision SCHP is asked for.

Pure decisions (the facts about the machine come in as arguments), so every
rule is testable without the hardware:

* **precision** ``segmentation.schp.precision`` (SCHP_PRECISION) = auto | fp32 | bf16,
  decided by the rule every engine shares (:func:`segworker.precision.choose_precision`).
  The deprecated ``SCHP_BF16`` (``segmentation.schp.bf16``) still works: true
  means bf16, false means fp32, and it is reported so the log can say so.
* **backend** ``segmentation.schp.backend`` (SCHP_BACKEND) = auto | openvino | eager.
  ``auto`` is OpenVINO on CPU (a compiled graph, about 1.3x faster in fp32 and
  7x in bf16 than eager fp32 at one thread) and eager PyTorch on CUDA
  (OpenVINO has no CUDA device); see docs/schp.md for the measurements.
"""

from __future__ import annotations

from segworker.precision import Choice

BACKENDS = ("auto", "openvino", "eager")


def requested_precision(precision: str, bf16: bool | None) -> tuple[str, str | None]:
    """The precision asked for, folding in the deprecated bf16 switch.

    Returns ``(requested, deprecation)``: ``deprecation`` is a log line when the
    old name was used (the configuration check has already refused a bf16
    switch that contradicts an explicit precision).
    """
    if bf16 is None:
        return precision, None
    old = "bf16" if bf16 else "fp32"
    note = (f"SCHP_BF16 (segmentation.schp.bf16) is deprecated: use SCHP_PRECISION={old} "
            "(segmentation.schp.precision) instead")
    return (old if precision == "auto" else precision), note


def choose_backend(requested: str, device_type: str, openvino_available: bool) -> Choice:
    """openvino or eager for ``requested`` (auto | openvino | eager) on ``device_type``.

    Raises ``ValueError`` (worded for an operator) when the request cannot be met.
    """
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; use one of {', '.join(BACKENDS)}")
    if requested == "eager":
        return Choice("eager", "SCHP_BACKEND=eager")
    if requested == "openvino":
        if device_type != "cpu":
            raise ValueError("segmentation.schp.backend (SCHP_BACKEND) is openvino but the "
                             f"device is {device_type}; OpenVINO runs SCHP on CPU only "
                             "(use auto or eager on a GPU)")
        if not openvino_available:
            raise ValueError("segmentation.schp.backend (SCHP_BACKEND) is openvino but the "
                             "openvino package cannot be imported (run ./setup.sh)")
        return Choice("openvino", "SCHP_BACKEND=openvino")
    if device_type != "cpu":
        return Choice("eager", f"SCHP_BACKEND=auto and the device is {device_type} "
                               "(OpenVINO runs on CPU only)")
    if not openvino_available:
        return Choice("eager", "SCHP_BACKEND=auto but the openvino package cannot be "
                               "imported (run ./setup.sh); eager PyTorch is slower")
    return Choice("openvino", "SCHP_BACKEND=auto and the device is cpu (OpenVINO's "
                              "compiled graph is the fastest CPU path)")
