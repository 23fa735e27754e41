"""Train the garment parser from labelled photos (CCP-59 label maps).

    venv/bin/python -m segworker.parser.train --data TRAIN_DIR [--dev DEV_DIR] \\
        [--out segworker/parser/parser.pt] [--epochs 60] [--low-res-epochs 40] [--workers 1]

``--data`` is laid out like ``train-ccp``: ``images/<stem>.jpg`` and
``labels/<stem>.png`` (CCP-59 class ids), with an optional ``manifest.json``.
``--dev`` (a folder laid out like the development set) is only *scored*
after each epoch, never trained on. Seeded: the same data, seed and thread
count give the same weights. The weights (and ``.sha256``) are written after
every epoch, so an interrupted run leaves a usable file; the per-epoch
figures go to ``<out>.log.jsonl``.

This is the one part of the project that reads a training folder: the
service and the tests never do.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from common.config import load_settings
from segworker.parser import weights
from segworker.parser.augment import MATCHED_P, STUDIO_P, make_sample
from segworker.parser.classes import (
    CLASS_NAMES,
    LOWER_ID,
    ONE_PIECE_ID,
    UPPER_ID,
    ccp_lookup,
    split_layered_one_piece,
)
from segworker.parser.devset import DevSet
from segworker.parser.infer import BASE_PLANES, POSE_INPUT_PLANES
from segworker.parser.lovasz import lovasz_softmax
from segworker.parser.network import NetShape, ParserNet, channels_last, lower_one_piece
from segworker.parser.person_cache import person_probabilities, pose_landmarks

#: Classes the region term (dice or Lovász) sharpens (the ones the masks are made of).
DICE_CLASSES = (UPPER_ID, LOWER_ID, ONE_PIECE_ID)
#: Largest ``--one-piece-weight-last``.
MAX_CLASS_WEIGHT = 10.0


class Photos:
    """Decoded training photos, their class maps, person probabilities and
    (with ``pose``) BlazePose landmarks, in memory."""

    def __init__(self, folder: Path, cache: Path, pose: bool = False,
                 split_layered: bool = True, studio: bool = True) -> None:
        stems = training_stems(folder)
        lookup = ccp_lookup()
        self.pose, self.studio = pose, studio
        self.rgb, self.classes, self.prob = [], [], []
        images = [folder / "images" / f"{stem}.jpg" for stem in stems]
        probs = person_probabilities(folder, stems, cache, images)
        marks = pose_landmarks(folder, stems, cache, images, probs) if pose else {}
        self.landmarks = [marks.get(stem) for stem in stems]
        for stem in stems:
            self.rgb.append(np.asarray(Image.open(folder / "images" / f"{stem}.jpg").convert("RGB")))
            classes = lookup[np.asarray(Image.open(folder / "labels" / f"{stem}.png"))]
            self.classes.append(split_layered_one_piece(classes) if split_layered else classes)
            self.prob.append(probs[stem].astype(np.float32) / 255.0)

    def __len__(self) -> int:
        return len(self.rgb)

    def batch(self, indices: np.ndarray, seed: int, resolution: float = 1.0,
              matched_p: float = MATCHED_P) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and class maps of one augmented batch at ``resolution`` times
        the input's size, painting outfits one colour with chance ``matched_p``:
        a function of its arguments alone, wherever it is computed."""
        rng = np.random.default_rng(seed)
        pairs = [make_sample(self.rgb[i], self.prob[i], self.classes[i], rng,
                             self.landmarks[i], self.pose, self.studio, resolution,
                             matched_p)
                 for i in indices]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


#: The photos a batch-making process forked from the trainer reads (its copy).
_FORKED: Photos | None = None


#: One batch to make: photo indices, seed, resolution, chance of a painted
#: outfit (see :meth:`Photos.batch`).
Job = tuple[np.ndarray, int, float, float]

#: The resolution of the first ``--low-res-epochs`` (a share of the input's size).
LOW_RES = 0.5


def _forked_batch(job: Job) -> tuple[np.ndarray, np.ndarray]:
    assert _FORKED is not None
    return _FORKED.batch(*job)


def batches(photos: Photos, jobs: list[Job],
            workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of ``jobs`` (:data:`Job`) in order, as tensors. With
    ``workers`` > 0 they are made ahead in that many forked processes, while
    the network trains on the last (a batch takes about a tenth of a full-size
    step to make, half of a half-size one).
    The same jobs give the same batches either way."""
    def tensors(pair: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(pair[0]).contiguous(memory_format=torch.channels_last)
        return x, torch.from_numpy(pair[1])

    if workers <= 0:
        for job in jobs:
            yield tensors(photos.batch(*job))
        return
    global _FORKED
    _FORKED = photos
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for pair in pool.imap(_forked_batch, jobs):
            yield tensors(pair)


def training_stems(folder: Path) -> list[str]:
    """The photos of a training folder: ``manifest.json`` order, else its labels' names."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        return [entry["stem"] for entry in json.loads(manifest.read_text())]
    return sorted(p.stem for p in (folder / "labels").glob("*.png"))


class Ema:
    """Exponential moving average of a model's weights (and a copy of its
    batch-norm statistics): steadier than the last step's weights."""

    def __init__(self, model: ParserNet, decay: float) -> None:
        self.model = ParserNet(model.shape)
        self.model.load_state_dict(model.state_dict())
        self.model.eval()
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: ParserNet) -> None:
        self.updates += 1
        # Early on the average would be mostly the random start: warm the decay up.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for mine, theirs in zip(self.model.state_dict().values(), model.state_dict().values()):
            if mine.is_floating_point():
                mine.mul_(decay).add_(theirs.detach(), alpha=1 - decay)
            else:
                mine.copy_(theirs)


def loss_fn(logits: torch.Tensor, target: torch.Tensor,
            one_piece_weight: float = 1.0, region: str = "dice",
            upper_weight: float = 1.0, region_weight: float = 0.5) -> torch.Tensor:
    """Cross-entropy plus ``region_weight`` times (the earlier weights': half;
    the committed ones': 1, ``--region-weight``'s default) a region term on
    the garment classes: a soft dice over the batch at the input's resolution
    (``region="dice"``, the earlier weights'), or the Lovász-softmax per
    image (``"lovasz"``, the committed weights',
    :mod:`segworker.parser.lovasz`) at the network's output resolution (its
    sort is the costly part: a quarter of the pixels make it a twentieth of a
    training step; the cross-entropy keeps the edges at the input's). The
    one-piece class's pixels (cross-entropy) and region term count
    ``one_piece_weight`` times, the upper garment's ``upper_weight`` times
    (1: as every other class)."""
    coarse = logits.float()
    logits = F.interpolate(coarse, size=target.shape[-2:], mode="bilinear", align_corners=False)
    weight_of = {ONE_PIECE_ID: one_piece_weight, UPPER_ID: upper_weight}
    class_weights = None
    if any(w != 1.0 for w in weight_of.values()):
        class_weights = torch.ones(logits.shape[1])
        for c, w in weight_of.items():
            class_weights[c] = w
    ce = F.cross_entropy(logits, target, weight=class_weights)
    region_weights = [weight_of.get(c, 1.0) for c in DICE_CLASSES]
    if region == "lovasz":
        coarse_target = F.interpolate(target[:, None].float(), size=coarse.shape[-2:],
                                      mode="nearest")[:, 0].long()
        return ce + region_weight * lovasz_softmax(coarse.softmax(dim=1), coarse_target,
                                                   DICE_CLASSES, region_weights)
    probs, dice = logits.softmax(dim=1), []
    for c in DICE_CLASSES:
        p, t = probs[:, c], (target == c).float()
        dice.append(1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1))
    weighted = torch.stack(dice) * torch.tensor(region_weights)
    return ce + region_weight * weighted.sum() / sum(region_weights)


def train(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)  # OpenCV's own threads would fight torch's for the same cores
    from tqdm import tqdm
    photos = Photos(Path(args.data), Path(args.cache), pose=args.pose,
                    split_layered=args.split_layered, studio=args.studio)
    settings = load_settings(args.config)
    dev = (DevSet(Path(args.dev), Path(args.cache), settings.segmentation.parser.labels,
                  settings.segmentation.refine, pose=args.pose) if args.dev else None)
    planes = POSE_INPUT_PLANES if args.pose else BASE_PLANES
    model = channels_last(ParserNet(NetShape(in_channels=len(planes)), dropout=args.dropout))
    ema = Ema(model, args.ema)
    steps_per_epoch = len(photos) // args.batch
    total = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total,
                                                pct_start=0.1, div_factor=20, final_div_factor=100)
    out, log_path = Path(args.out), Path(f"{args.out}.log.jsonl")
    log_path.write_text("")
    started = time.time()
    order_rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = order_rng.permutation(len(photos))
        chunks = [order[i * args.batch:(i + 1) * args.batch] for i in range(steps_per_epoch)]
        seeds = order_rng.integers(0, 2**31, size=len(chunks))
        # Early epochs at low resolution (a fifth of a full step's time), while the
        # network learns what a garment is; the rest at the input's own size.
        resolution = LOW_RES if epoch <= args.low_res_epochs else 1.0
        matched = matched_chance(args, epoch)
        one_piece_weight = late_ramp(args, epoch, 1.0, args.one_piece_weight_last)
        jobs = [(indices, int(seed), resolution, matched) for indices, seed in zip(chunks, seeds)]
        losses = []
        bar = tqdm(batches(photos, jobs, args.workers), total=len(jobs),
                   desc=f"epoch {epoch}/{args.epochs}", unit="batch", file=sys.stdout,
                   mininterval=5)
        for x, y in bar:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                loss = loss_fn(model(x), y, one_piece_weight, args.region_loss,
                               args.upper_weight, args.region_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            ema.update(model)
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        record = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4), "matched_p": matched,
                  "one_piece_weight": one_piece_weight,
                  "lr": sched.get_last_lr()[0], "minutes": round((time.time() - started) / 60, 1)}
        if dev is not None:  # scored as served: with the penalty the file will carry
            record.update(dev.score(lower_one_piece(copy.deepcopy(ema.model),
                                                    args.one_piece_penalty)))
        trained = _trained_facts(args, photos, epoch, record)
        weights.save(ema.model, out, trained, args.one_piece_penalty)
        if args.keep_epochs:
            weights.save(ema.model, out.with_name(f"{out.stem}.epoch{epoch:02d}{out.suffix}"),
                         trained, args.one_piece_penalty)
        with open(log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    return 0


def matched_chance(args: argparse.Namespace, epoch: int) -> float:
    """The chance of a painted outfit in ``epoch`` (1-based): ``--matched-p``,
    rising over the full-size epochs to ``--matched-p-last`` (:func:`late_ramp`)."""
    return late_ramp(args, epoch, args.matched_p, args.matched_p_last)


def late_ramp(args: argparse.Namespace, epoch: int, start: float, last: float) -> float:
    """A training setting in ``epoch`` (1-based) that is ``start`` through the
    low-resolution epochs and the first full-size one, then moves linearly to
    ``last`` at the last epoch: where longer runs learn that one colour from
    shoulder to knee is a dress (docs/parser.md, runs not kept)."""
    first, final = args.low_res_epochs + 1, args.epochs
    if epoch < first:
        return float(start)
    share = (epoch - first) / (final - first) if final > first else 1.0
    return round(start + share * (last - start), 4)


def _trained_facts(args: argparse.Namespace, photos: Photos, epoch: int, record: dict) -> dict:
    return {"data": Path(args.data).name, "photos": len(photos), "epochs": epoch,
            "seed": args.seed, "batch": args.batch, "lr": args.lr, "bf16": args.bf16,
            "pose": args.pose, "split_layered_one_piece": args.split_layered,
            "low_res_epochs": {"epochs": args.low_res_epochs, "resolution": LOW_RES},
            "one_piece_penalty": args.one_piece_penalty, "weight_decay": args.weight_decay,
            "one_piece_loss_weight_last": args.one_piece_weight_last,
            "region_loss": args.region_loss, "dropout": args.dropout,
            "upper_loss_weight": args.upper_weight, "region_loss_weight": args.region_weight,
            "studio": ({"backdrop_p": STUDIO_P, "matched_two_piece_p": args.matched_p,
                        "matched_two_piece_p_last": args.matched_p_last}
                       if args.studio else None),
            "classes": list(CLASS_NAMES), "last_epoch": record,
            "source": "Clothing Co-Parsing (Yang, Luo, Lin, CVPR 2014), CCP-59 pixel labels"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the garment parser.")
    parser.add_argument("--data", required=True, help="training folder (images/, labels/)")
    parser.add_argument("--dev", help="development folder, scored after every epoch (never trained on)")
    parser.add_argument("--out", default=str(weights.BUNDLED), help="weights file to write")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--ema", type=float, default=0.995, help="weight-average decay per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the committed weights: 1; results depend on it)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that make batches ahead (0: in the trainer; the "
                        "result is the same)")
    parser.add_argument("--fp32", dest="bf16", action="store_false",
                        help="train in float32 (default: bf16 autocast, fast on AMX CPUs)")
    parser.add_argument("--no-pose", dest="pose", action="store_false",
                        help="RGB + person planes only (the first weights' input; default: "
                        "with the BlazePose heatmap planes)")
    parser.add_argument("--keep-layered", dest="split_layered", action="store_false",
                        help="train a one-piece garment under a top as CCP labels it (the "
                        "earlier weights; default: split into the top and skirt it looks like)")
    parser.add_argument("--street-only", dest="studio", action="store_false",
                        help="no studio perturbations (plain backdrops, a top and skirt of "
                        "one colour): the earlier weights' augmentation")
    parser.add_argument("--matched-p", type=float, default=MATCHED_P,
                        help="chance that a sample's top and trousers or skirt are painted one "
                        "colour (studio perturbations; default: %(default)s, the committed "
                        "weights'; docs/parser.md, runs not kept)")
    parser.add_argument("--matched-p-last", type=float,
                        help="the chance of painted outfits in the last epoch: it rises "
                        "linearly to it from --matched-p over the full-size epochs (what "
                        "longer training learns last is that one colour is a dress; "
                        "default: --matched-p throughout)")
    parser.add_argument("--one-piece-weight-last", type=float, default=1.0,
                        help="how much the one-piece class counts in the loss in the last "
                        "epoch: 1 (as every class) through the half-size epochs and the first "
                        "full-size one, then moving linearly to it (default: %(default)s, "
                        "throughout)")
    parser.add_argument("--upper-weight", type=float, default=1.0,
                        help="how much the upper-garment class counts in the loss, every "
                        "epoch (thin tops, scarves and cardigans are what the upper mask "
                        "misses most; default: %(default)s, as every class, the committed "
                        "weights')")
    parser.add_argument("--region-loss", choices=("dice", "lovasz"), default="lovasz",
                        help="the term beside the cross-entropy on the garment classes: a "
                        "soft dice over the batch (the earlier weights') or the Lovasz-softmax "
                        "per image (an IoU surrogate; default, the committed weights'; "
                        "docs/parser.md)")
    parser.add_argument("--region-weight", type=float, default=1.0,
                        help="how much the region term counts beside the cross-entropy (it "
                        "weighs each garment of a photo by its IoU, however small; default: "
                        "%(default)s, the committed weights'; 0.5: the previous ones')")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="chance that a feature channel is zeroed in training, on the "
                        "deepest features and before the classifier (default: %(default)s, "
                        "none, the committed weights')")
    parser.add_argument("--one-piece-penalty", type=float, default=2.0,
                        help="how much the saved file lowers the one-piece logit at inference "
                        "(docs/parser.md, Classes; 0: the argmax of the trained network)")
    parser.add_argument("--low-res-epochs", type=int, default=40,
                        help=f"train the first N of the epochs on crops at {LOW_RES} times the "
                        "input's size (a fifth of the time per step; default: %(default)s, "
                        "the committed weights'; 0: every epoch at full size, the earlier "
                        "weights'; docs/parser.md)")
    parser.add_argument("--keep-epochs", action="store_true",
                        help="also keep every epoch's weights, as <out stem>.epochNN.pt")
    parser.add_argument("--config", help="config file whose label sets and refinement the "
                        "dev score uses (default: config.yaml)")
    parser.add_argument("--cache", default="var/parser-cache",
                        help="where person masks and landmarks of the photos are kept between runs")
    args = parser.parse_args(argv)
    try:
        weights.checked_penalty(args.one_piece_penalty)
    except ValueError as exc:
        parser.error(f"--one-piece-penalty: {exc}")
    if args.matched_p_last is None:
        args.matched_p_last = args.matched_p
    for option, chance in (("--matched-p", args.matched_p),
                           ("--matched-p-last", args.matched_p_last)):
        if not 0.0 <= chance <= 1.0:
            parser.error(f"{option} must be a chance from 0 to 1")
    for option, weight in (("--one-piece-weight-last", args.one_piece_weight_last),
                           ("--upper-weight", args.upper_weight)):
        if not 0.0 < weight <= MAX_CLASS_WEIGHT:
            # 0 would leave a batch of that class's pixels only with nothing to average
            parser.error(f"{option} must be over 0 and at most {MAX_CLASS_WEIGHT:g}")
    if not 0.0 <= args.region_weight <= MAX_CLASS_WEIGHT:
        parser.error(f"--region-weight must be from 0 to {MAX_CLASS_WEIGHT:g}")
    if not 0.0 <= args.dropout < 1.0:
        parser.error("--dropout must be a chance from 0 to below 1")
    if not 0 <= args.low_res_epochs < args.epochs:
        # the service runs the network at full size: its last epoch must have been too
        parser.error(f"--low-res-epochs must be from 0 to {args.epochs - 1} (fewer than --epochs)")
    return args


def main(argv: list[str] | None = None) -> int:
    return train(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
