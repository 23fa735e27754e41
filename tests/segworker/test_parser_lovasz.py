"""The Lovász-softmax region term of the parser's training loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from segworker.parser import train
from segworker.parser.lovasz import jaccard_steps, lovasz_softmax

from .test_parser_train import run_training, synthetic_folder

CLASSES = (1, 2, 3)


def random_maps(seed: int, shape=(3, 24, 16), classes: int = 8) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, classes, shape))


def one_minus_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    return 1.0 - float((pred & truth).sum() / (pred | truth).sum())


def test_on_hard_probabilities_it_is_the_mean_jaccard_loss_of_the_classes_present():
    target, guess = random_maps(0), random_maps(1)
    target[1][target[1] == 3] = 0  # image 1 has no one-piece pixel: that pair is not counted
    probs = F.one_hot(guess, 8).permute(0, 3, 1, 2).float()
    expected = [one_minus_iou(guess[b].numpy() == c, target[b].numpy() == c)
                for b in range(3) for c in CLASSES if (target[b] == c).any()]
    assert len(expected) == 8
    assert float(lovasz_softmax(probs, target, CLASSES)) == pytest.approx(np.mean(expected), abs=1e-6)


def test_it_is_zero_when_every_pixel_is_right_and_grows_with_the_wrong_ones():
    target = random_maps(2)
    right = F.one_hot(target, 8).permute(0, 3, 1, 2).float()
    assert float(lovasz_softmax(right, target, CLASSES)) == 0.0
    costs = []
    for wrong_rows in (2, 6, 12):
        probs = right.clone()
        probs[:, :, :wrong_rows] = F.one_hot(torch.zeros_like(target[:, :wrong_rows]), 8).permute(0, 3, 1, 2).float()
        costs.append(float(lovasz_softmax(probs, target, CLASSES)))
    assert 0 < costs[0] < costs[1] < costs[2]


def test_class_weights_scale_each_class_s_share():
    target, guess = random_maps(3), random_maps(4)
    probs = F.one_hot(guess, 8).permute(0, 3, 1, 2).float()
    per_class = [float(lovasz_softmax(probs, target, (c,))) for c in CLASSES]
    weighted = float(lovasz_softmax(probs, target, CLASSES, (1.0, 1.0, 0.25)))
    assert weighted == pytest.approx((per_class[0] + per_class[1] + 0.25 * per_class[2]) / 2.25, abs=1e-6)


def test_no_class_present_gives_zero_with_a_graph():
    logits = torch.randn(2, 8, 6, 4, requires_grad=True)
    loss = lovasz_softmax(logits.softmax(1), torch.zeros(2, 6, 4, dtype=torch.long), CLASSES)
    loss.backward()
    assert float(loss.detach()) == 0.0 and logits.grad is not None


def test_jaccard_steps_add_up_to_the_loss_of_everything_wrong():
    truth = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    steps = jaccard_steps(truth)
    assert float(steps.sum()) == pytest.approx(1.0)  # every pixel wrong: IoU 0
    assert bool((steps >= 0).all())


def test_descending_its_gradient_raises_the_iou():
    target = random_maps(5)
    logits = torch.zeros(3, 8, 24, 16, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.3)

    def hard_iou() -> float:
        guess = logits.detach().argmax(1).numpy()
        return float(np.mean([1 - one_minus_iou(guess[b] == c, target[b].numpy() == c)
                              for b in range(3) for c in CLASSES]))

    before, costs = hard_iou(), []
    for _ in range(20):
        loss = lovasz_softmax(logits.softmax(1), target, CLASSES)
        opt.zero_grad()
        loss.backward()
        opt.step()
        costs.append(float(loss.detach()))
    assert costs[-1] < costs[0] - 0.3
    assert hard_iou() > before + 0.5


def test_the_training_loss_takes_it_in_place_of_the_dice():
    target = random_maps(6, shape=(2, 48, 32))
    logits = torch.randn(2, 8, 24, 16, generator=torch.Generator().manual_seed(0))
    dice, lovasz = train.loss_fn(logits, target), train.loss_fn(logits, target, region="lovasz")
    full = F.interpolate(logits, size=(48, 32), mode="bilinear", align_corners=False)
    ce = F.cross_entropy(full, target)
    coarse = target[:, ::2, ::2]  # the output's resolution: every second pixel
    assert float(lovasz) == pytest.approx(float(ce + 0.5 * lovasz_softmax(logits.softmax(1), coarse, CLASSES)), abs=1e-5)
    assert float(dice) != pytest.approx(float(lovasz), abs=1e-4)


def test_the_command_trains_with_either_and_the_file_records_which(tmp_path):
    folder = synthetic_folder(tmp_path / "train")
    out = tmp_path / "lovasz.pt"
    run_training(folder, out, tmp_path / "cache", extra=("--region-loss", "dice"))
    from segworker.parser import weights
    assert weights.load(out)[1]["region_loss"] == "dice"
    assert train.parse_args(["--data", "x"]).region_loss == "lovasz"  # as the committed file
