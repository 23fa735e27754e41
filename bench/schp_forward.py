"""SCHP speed figures: forward ms, peak RSS, and post-processing ms.

Prints figures, asserts nothing. Random weights (speed does not depend on
them). Each configuration runs in a fresh subprocess so thread pools,
allocator state and peak RSS do not leak between them.

    venv/bin/python bench/schp_forward.py            # full run (several minutes)
    venv/bin/python bench/schp_forward.py --quick    # fewer repetitions
    venv/bin/python bench/schp_forward.py --compare-layout   # + NCHW vs channels_last

Figures on a shared machine are noisy: compare runs made back to back.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: The project root (so the script runs from anywhere).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Network input side -> the dataset that uses it.
SIZE_DATASET = {512: "atr", 473: "lip"}

#: The photo size post-processing is timed on, (width, height) in pixels.
POST_PHOTO = (768, 1024)


def child_forward(args: argparse.Namespace) -> dict:
    """Time engine.logits() for one configuration in this process."""
    import numpy as np

    from common.config import LabelSet
    from segworker.schp.engine import SchpEngine
    from segworker.schp.network import SchpNet
    from segworker.schp.transforms import preprocess

    _set_threads(args.threads[0])
    dataset = SIZE_DATASET[args.size]
    model = SchpNet({"atr": 18, "lip": 20}[dataset])
    engine = SchpEngine(model, dataset, LabelSet((1,), (2,)), input_size=args.size,
                        bf16=args.precision == "bf16", channels_last=args.layout == "cl")
    rng = np.random.default_rng(0)
    batch, _ = preprocess(rng.integers(0, 256, (1024, 768, 3), dtype=np.uint8), args.size)
    times = []
    for i in range(args.warmup + args.reps):
        start = time.perf_counter()
        engine.logits(batch)
        if i >= args.warmup:
            times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": statistics.median(times), "min_ms": min(times),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_post(args: argparse.Namespace) -> dict:
    """Time pre- and post-processing of a 768x1024 photo at 1 thread."""
    import numpy as np
    import torch

    from segworker.schp.transforms import postprocess, preprocess, upsample_logits

    _set_threads(1)
    rng = np.random.default_rng(0)
    width, height = POST_PHOTO
    photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    logits = torch.randn(18, 128, 128)
    _, inverse = preprocess(photo, 512)
    reps = args.reps * 3
    pre = _median_ms(lambda: preprocess(photo, 512), reps)
    with torch.inference_mode():
        post = _median_ms(lambda: postprocess(logits, inverse, width, height, 512), reps)
        naive = _median_ms(lambda: _per_channel_post(logits, inverse, width, height), reps)
        up = _median_ms(lambda: upsample_logits(logits, 512), reps)
    return {"preprocess_ms": pre, "postprocess_ms": post, "upsample_ms": up,
            "per_channel_postprocess_ms": naive}


def _per_channel_post(logits, inverse, width, height):
    """Post-processing one warpAffine per channel, as the reference does: the baseline."""
    import cv2
    import numpy as np

    from segworker.schp.transforms import upsample_logits

    hwc = upsample_logits(logits, 512)
    planes = [cv2.warpAffine(hwc[:, :, c], inverse, (width, height), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
              for c in range(hwc.shape[2])]
    return np.argmax(np.stack(planes, axis=2), axis=2).astype(np.uint8)


def _median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _set_threads(threads: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def run_child(*extra: str) -> dict:
    """Run this script as a child with ``extra`` arguments; its JSON result."""
    proc = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True,
                          cwd=ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    if args.child == "forward":
        print(json.dumps(child_forward(args)))
        return
    if args.child == "post":
        print(json.dumps(child_post(args)))
        return
    warmup, reps = (1, 3) if args.quick else (3, 10)
    layouts = ("cl", "nchw") if args.compare_layout else ("cl",)
    print(f"SCHP forward, random weights, median of {reps} after {warmup} warm-up "
          f"(each line a fresh process; shared machine, figures are noisy)")
    print(f"{'input':>5} {'threads':>7} {'precision':>9} {'layout':>6} "
          f"{'median ms':>10} {'min ms':>8} {'peak RSS MiB':>13}")
    for size in args.sizes:
        for threads in args.threads:
            for precision in ("fp32", "bf16"):
                for layout in layouts:
                    r = run_child("--child", "forward", "--size", str(size), "--threads",
                                  str(threads), "--precision", precision, "--layout", layout,
                                  "--warmup", str(warmup), "--reps", str(reps))
                    _print_forward(size, threads, precision, layout, r)
    r = run_child("--child", "post", "--reps", str(reps))
    print(f"\nPre/post-processing, {POST_PHOTO[0]}x{POST_PHOTO[1]} photo, 512 input, "
          "18 classes, 1 thread:")
    for key, value in r.items():
        print(f"  {key:>28}: {value:.1f}" if isinstance(value, float) else f"  {key}: {value}")


def _print_forward(size: int, threads: int, precision: str, layout: str, r: dict) -> None:
    layout_name = "cl" if layout == "cl" else "nchw"
    if "error" in r:
        print(f"{size:>5} {threads:>7} {precision:>9} {layout_name:>6}  failed: {r['error']}")
        return
    print(f"{size:>5} {threads:>7} {precision:>9} {layout_name:>6} {r['median_ms']:>10.0f} "
          f"{r['min_ms']:>8.0f} {r['peak_rss_mib']:>13.0f}", flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 warm-up + 3 timed passes")
    p.add_argument("--compare-layout", action="store_true",
                   help="also time NCHW-contiguous (the default layout is channels_last)")
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 473], choices=[512, 473])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--child", choices=["forward", "post"], help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=512, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--layout", default="cl", help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--reps", type=int, default=3, help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    main()
