"""What bf16 changes in SCHP's output, per photo: label agreement and mask IoU against fp32.

    venv/bin/python bench/schp_precision.py --weights exp-schp-201908301523-atr.pth a.jpg b.jpg
    venv/bin/python bench/schp_precision.py a.jpg           # random weights: a worst case

For each photo it runs the service's own pipeline (pre-processing, forward,
post-processing, label sets of the weights' dataset, then the mask refinement)
with eager fp32 (the reference) and each other backend x precision, and prints
the share of pixels with the same label, and the IoU of the upper and lower
masks. Prints figures, asserts nothing; one thread.

Without ``--weights`` it uses a random-weight network. A random network is far
less confident than a trained one (its logits are nearly tied almost
everywhere), so bf16 rounding flips many more labels: random-weight figures
are a worst case, not an estimate of what bf16 does with the official weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import load_settings
from common.photo import decode_rgb

if TYPE_CHECKING:
    from segworker.engine import Engine, Segmentation

#: A (backend, precision) pair.
Variant = tuple[str, str]
#: Label agreement and upper/lower IoU against eager fp32; None when either found no person.
Figures = dict[str, float] | None

#: (backend, precision) pairs compared with eager fp32.
VARIANTS = (("openvino", "fp32"), ("eager", "bf16"), ("openvino", "bf16"))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def build_engines(weights: Path | None, backends: set[str]) -> tuple[dict, str]:
    """``{(backend, precision): SchpEngine}`` sharing one network, and a label for it."""
    import torch

    from segworker.schp.checkpoint import load_model
    from segworker.schp.engine import SchpEngine
    from segworker.schp.network import SchpNet

    labels = load_settings(environ={}).segmentation.schp.labels
    if weights is None:
        torch.manual_seed(0)
        model, dataset, info = SchpNet(18).eval(), "atr", None
        name = "random weights (ATR shapes, seed 0)"
    else:
        model, info = load_model(weights)
        dataset, name = info.dataset, f"{weights.name} ({info.dataset})"
    engines = {}
    for backend, precision in (("eager", "fp32"),) + VARIANTS:
        if backend in backends:
            engines[(backend, precision)] = SchpEngine(
                model, dataset, labels[dataset], precision=precision, backend=backend,
                checkpoint=info)
    return engines, name


def compare(engines: dict[Variant, Engine], rgb: np.ndarray) -> dict[Variant, Figures]:
    """Per variant: label agreement and upper/lower IoU against eager fp32."""
    from segworker.engine import NoPersonError

    results: dict[Variant, Figures] = {}
    outputs: dict[Variant, Segmentation | None] = {}
    for key, engine in engines.items():
        try:
            outputs[key] = engine.segment(rgb)
        except NoPersonError:
            outputs[key] = None
    reference = outputs[("eager", "fp32")]
    for key, seg in outputs.items():
        if key == ("eager", "fp32"):
            continue
        if seg is None or reference is None:
            results[key] = None
            continue
        results[key] = {"agreement": float(np.mean(seg.seg_map == reference.seg_map)),
                        "upper_iou": iou(seg.upper, reference.upper),
                        "lower_iou": iou(seg.lower, reference.lower)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="+", type=Path, help="JPEG/PNG photos of people")
    parser.add_argument("--weights", type=Path, help="an official SCHP checkpoint "
                        "(default: random weights, a worst case)")
    parser.add_argument("--backends", nargs="+", default=["eager", "openvino"],
                        choices=["eager", "openvino"])
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    engines, name = build_engines(args.weights, set(args.backends) | {"eager"})
    print(f"SCHP fp32 vs bf16 per photo, {name}; reference: eager fp32")
    if args.weights is None:
        print("NOTE: random weights. A random network is far less confident than a trained "
              "one, so these figures are a WORST CASE, not an estimate; run with --weights "
              "and the official file for real figures.")
    variants = [k for k in engines if k != ("eager", "fp32")]
    header = "".join(f" {b + ' ' + p:>30}" for b, p in variants)
    print(f"{'photo':<28}{header}")
    print(f"{'':<28}" + "".join(f" {'labels   upper IoU lower IoU':>30}" for _ in variants))
    settings = load_settings(environ={})
    totals: dict = {k: [] for k in variants}
    for path in args.photos:
        rgb = decode_rgb(path.read_bytes(), settings.server.max_image_pixels)
        results = compare(engines, rgb)
        cells = []
        for key in variants:
            r = results[key]
            if r is None:
                cells.append(f" {'no person found':>30}")
                continue
            totals[key].append(r)
            cells.append(f" {100 * r['agreement']:>8.2f}% {r['upper_iou']:>9.4f} "
                         f"{r['lower_iou']:>9.4f}")
        print(f"{path.name[:27]:<28}" + "".join(cells), flush=True)
    if len(args.photos) > 1:
        cells = []
        for key in variants:
            rows = totals[key] or [{"agreement": float("nan"), "upper_iou": float("nan"),
                                    "lower_iou": float("nan")}]
            mean = {m: float(np.mean([r[m] for r in rows])) for m in rows[0]}
            cells.append(f" {100 * mean['agreement']:>8.2f}% {mean['upper_iou']:>9.4f} "
                         f"{mean['lower_iou']:>9.4f}")
        print(f"{'mean':<28}" + "".join(cells))


if __name__ == "__main__":
    main()
