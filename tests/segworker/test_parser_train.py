"""The training command, on a few synthetic photos (no test reads a real data set)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segworker.parser import crop, train, weights


def synthetic_folder(root: Path, count: int = 4) -> Path:
    """Photos laid out like train-ccp: a figure with a CCP t-shirt (51), jeans
    (25), skin (41) and hair (19) on a plain background."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        labels = np.zeros((150, 100), np.uint8)
        x = 30 + i * 5
        labels[10:25, x + 5:x + 25] = 19
        labels[25:35, x + 8:x + 22] = 41
        labels[35:80, x:x + 30] = 51
        labels[80:140, x + 2:x + 28] = 25
        colours = {0: (200, 200, 190), 19: (40, 30, 20), 41: (220, 170, 140),
                   51: (200, 30, 30), 25: (30, 50, 150)}
        rgb = np.zeros((150, 100, 3), np.uint8)
        for cid, colour in colours.items():
            rgb[labels == cid] = colour
        rgb = np.clip(rgb + rng.integers(-10, 10, rgb.shape), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / "images" / f"ccp_{i:04d}.jpg", quality=90)
        Image.fromarray(labels).save(root / "labels" / f"ccp_{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return synthetic_folder(tmp_path_factory.mktemp("train"))


def record_batches(monkeypatch) -> list[tuple[tuple[int, int], float]]:
    """The (size, chance of a painted outfit) of every batch training makes
    from now on, in order (batches must be made in the trainer: ``workers=0``)."""
    made: list[tuple[tuple[int, int], float]] = []
    batch = train.Photos.batch

    def recording(self, indices, seed, resolution=1.0, matched_p=train.MATCHED_P):
        pair = batch(self, indices, seed, resolution, matched_p)
        made.append((pair[1].shape[-2:], matched_p))
        return pair

    monkeypatch.setattr(train.Photos, "batch", recording)
    return made


def run_training(folder: Path, out: Path, cache: Path, workers: int = 1,
                 extra: tuple[str, ...] = ()) -> None:
    before = torch.get_num_threads()
    try:
        assert train.main(["--data", str(folder), "--out", str(out), "--epochs", "1",
                           "--low-res-epochs", "0", "--batch", "2", "--threads", "1",
                           "--cache", str(cache), "--workers", str(workers), *extra]) == 0
    finally:
        torch.set_num_threads(before)


def test_one_epoch_writes_loadable_weights_and_a_log(folder, tmp_path):
    out = tmp_path / "parser.pt"
    run_training(folder, out, tmp_path / "cache")
    _model, trained = weights.load(out)
    assert trained["epochs"] == 1 and trained["photos"] == 4
    assert trained["studio"] == {"backdrop_p": train.STUDIO_P, "matched_two_piece_p": train.MATCHED_P,
                                 "matched_two_piece_p_last": train.MATCHED_P}
    assert torch.load(out, weights_only=True)["one_piece_penalty"] == trained["one_piece_penalty"] == 2.0
    assert trained["weight_decay"] == 0.05 and trained["region_loss"] == "lovasz"
    assert trained["one_piece_loss_weight_last"] == 1.0
    [record] = [json.loads(line) for line in Path(f"{out}.log.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and np.isfinite(record["loss"]) and record["loss"] > 0
    assert list((tmp_path / "cache").glob("person-*.npz"))  # person masks kept for the next run


def test_training_is_seeded(folder, tmp_path):
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    run_training(folder, first, tmp_path / "cache")
    run_training(folder, second, tmp_path / "cache")
    a = torch.load(first, weights_only=True)["state_dict"]
    b = torch.load(second, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batches_made_ahead_in_a_process_train_the_same_weights(folder, tmp_path):
    ahead, inline = tmp_path / "ahead.pt", tmp_path / "inline.pt"
    run_training(folder, ahead, tmp_path / "cache", workers=1)
    run_training(folder, inline, tmp_path / "cache", workers=0)
    a = torch.load(ahead, weights_only=True)["state_dict"]
    b = torch.load(inline, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_training_step_lowers_the_loss_on_a_fixed_batch(folder, tmp_path):
    photos = train.Photos(folder, tmp_path / "cache")
    pair = photos.batch(np.arange(4), seed=1)
    x, y = torch.from_numpy(pair[0]), torch.from_numpy(pair[1])
    torch.manual_seed(0)
    model = train.ParserNet()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(4):
        loss = train.loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_training_splits_a_dress_worn_under_a_top_unless_told_not_to(tmp_path):
    folder = synthetic_folder(tmp_path / "data", count=2)
    for path in (folder / "labels").glob("*.png"):  # the jeans become a CCP dress (14)
        labels = np.asarray(Image.open(path)).copy()
        labels[labels == 25] = 14
        Image.fromarray(labels).save(path)
    one_piece = train.CLASS_NAMES.index("one_piece")
    split = train.Photos(folder, tmp_path / "cache")
    kept = train.Photos(folder, tmp_path / "cache", split_layered=False)
    assert not any((c == one_piece).any() for c in split.classes)
    assert all((c == one_piece).sum() > 1000 for c in kept.classes)


def test_street_only_trains_without_the_studio_perturbations(folder, tmp_path):
    studio, street = tmp_path / "studio.pt", tmp_path / "street.pt"
    run_training(folder, studio, tmp_path / "cache")
    run_training(folder, street, tmp_path / "cache", extra=("--street-only",))
    assert weights.load(street)[1]["studio"] is None
    a = torch.load(studio, weights_only=True)["state_dict"]
    b = torch.load(street, weights_only=True)["state_dict"]
    assert not all(torch.equal(a[k], b[k]) for k in a)  # some sample was perturbed


@pytest.mark.parametrize("value", ["-1", "11"])
def test_a_penalty_out_of_range_stops_the_command(value, capsys):
    with pytest.raises(SystemExit) as stop:
        train.parse_args(["--data", "x", "--one-piece-penalty", value])
    assert stop.value.code == 2 and "--one-piece-penalty" in capsys.readouterr().err


def test_low_resolution_epochs_come_first_and_are_recorded(folder, tmp_path, monkeypatch):
    """``--low-res-epochs 1 --epochs 2``: the first epoch's batches are half the
    input's size, the second's full size; the file says so, and it loads."""
    made = record_batches(monkeypatch)
    out = tmp_path / "low.pt"
    run_training(folder, out, tmp_path / "cache", workers=0,
                 extra=("--epochs", "2", "--low-res-epochs", "1"))
    half, full = (crop.INPUT_H // 2, crop.INPUT_W // 2), (crop.INPUT_H, crop.INPUT_W)
    assert [size for size, _ in made] == [half, half, full, full]  # 4 photos, batches of 2
    _model, trained = weights.load(out)
    assert trained["low_res_epochs"] == {"epochs": 1, "resolution": train.LOW_RES}
    assert trained["epochs"] == 2


@pytest.mark.parametrize("value", ["-1", "30"])
def test_low_resolution_epochs_must_leave_a_full_size_one(value, capsys):
    with pytest.raises(SystemExit) as stop:
        train.parse_args(["--data", "x", "--epochs", "30", "--low-res-epochs", value])
    assert stop.value.code == 2 and "--low-res-epochs" in capsys.readouterr().err


def test_the_chance_of_painted_outfits_is_an_option_the_file_records(folder, tmp_path):
    out = tmp_path / "matched.pt"
    run_training(folder, out, tmp_path / "cache", extra=("--matched-p", "0.4"))
    assert weights.load(out)[1]["studio"] == {"backdrop_p": train.STUDIO_P,
                                              "matched_two_piece_p": 0.4,
                                              "matched_two_piece_p_last": 0.4}


def test_painted_outfits_grow_more_common_over_the_full_size_epochs(folder, tmp_path,
                                                                    monkeypatch):
    """``--matched-p-last``: the half-size epochs and the first full-size one
    use ``--matched-p``, the last one the given chance, those between a straight
    line; each epoch's batches are made with its chance, and the log says it."""
    made = record_batches(monkeypatch)
    out = tmp_path / "ramp.pt"
    run_training(folder, out, tmp_path / "cache", workers=0,
                 extra=("--epochs", "4", "--low-res-epochs", "1", "--matched-p", "0.1",
                        "--matched-p-last", "0.7"))
    chances = [chance for _, chance in made]
    assert chances == [0.1, 0.1, 0.1, 0.1, 0.4, 0.4, 0.7, 0.7]  # 4 photos, batches of 2
    log = [json.loads(line) for line in Path(f"{out}.log.jsonl").read_text().splitlines()]
    assert [record["matched_p"] for record in log] == [0.1, 0.1, 0.4, 0.7]
    assert weights.load(out)[1]["studio"]["matched_two_piece_p_last"] == 0.7


@pytest.mark.parametrize("option", ["--matched-p", "--matched-p-last"])
@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan"])
def test_a_matched_chance_out_of_range_stops_the_command(option, value, capsys):
    with pytest.raises(SystemExit) as stop:
        train.parse_args(["--data", "x", option, value])
    assert stop.value.code == 2 and f"{option} must" in capsys.readouterr().err


def _one_piece_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (2 x 8 x 6 x 4) and a target of upper garment above, one-piece
    below, the logits sure of the upper garment everywhere."""
    target = torch.full((2, 12, 8), train.UPPER_ID)
    target[:, 6:] = train.ONE_PIECE_ID
    logits = torch.zeros(2, len(train.CLASS_NAMES), 6, 4)
    logits[:, train.UPPER_ID] = 4.0
    return logits, target


def test_a_one_piece_weight_of_1_is_the_plain_loss():
    logits, target = _one_piece_batch()
    logits = logits + torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
    up = torch.nn.functional.interpolate(logits, size=(12, 8), mode="bilinear",
                                         align_corners=False)
    probs = up.softmax(dim=1)
    dice = [1 - (2 * (probs[:, c] * (target == c)).sum() + 1)
            / (probs[:, c].sum() + (target == c).sum() + 1) for c in train.DICE_CLASSES]
    plain = torch.nn.functional.cross_entropy(up, target) + 0.5 * torch.stack(dice).mean()
    assert torch.allclose(train.loss_fn(logits, target), plain)
    assert torch.allclose(train.loss_fn(logits, target, 1.0), plain)


def test_a_lower_one_piece_weight_makes_a_missed_one_piece_garment_cost_less():
    logits, target = _one_piece_batch()   # the one-piece half called upper garment
    costs = [float(train.loss_fn(logits, target, w)) for w in (1.0, 0.5, 0.1)]
    assert costs[0] > costs[1] > costs[2] > 0
    everything_right = logits.clone()
    everything_right[:, train.ONE_PIECE_ID, 3:] = 8.0  # the logits' lower half is one-piece
    assert float(train.loss_fn(everything_right, target, 0.1)) < costs[2]


def test_the_one_piece_weight_moves_over_the_full_size_epochs(folder, tmp_path, monkeypatch):
    """``--one-piece-weight-last``: 1 in the half-size epochs and the first
    full-size one, the given weight in the last, a straight line between; each
    step's loss is taken with its epoch's weight, the log and file say it.
    ``--upper-weight`` and ``--region-weight`` are the same in every step, and
    the file says them too."""
    used: list[tuple[float, float]] = []
    loss_fn = train.loss_fn

    def recording(logits, target, one_piece_weight=1.0, region="lovasz", upper_weight=1.0,
                  region_weight=0.5):
        used.append((one_piece_weight, upper_weight, region_weight))
        return loss_fn(logits, target, one_piece_weight, region, upper_weight, region_weight)

    monkeypatch.setattr(train, "loss_fn", recording)
    out = tmp_path / "weighted.pt"
    run_training(folder, out, tmp_path / "cache", workers=0,
                 extra=("--epochs", "4", "--low-res-epochs", "1",
                        "--one-piece-weight-last", "0.4", "--upper-weight", "1.5",
                        "--region-weight", "1.25"))
    # 4 photos, batches of 2
    assert [w for w, _, _ in used] == [1.0, 1.0, 1.0, 1.0, 0.7, 0.7, 0.4, 0.4]
    assert {(u, r) for _, u, r in used} == {(1.5, 1.25)}
    log = [json.loads(line) for line in Path(f"{out}.log.jsonl").read_text().splitlines()]
    assert [record["one_piece_weight"] for record in log] == [1.0, 1.0, 0.7, 0.4]
    trained = weights.load(out)[1]
    assert trained["one_piece_loss_weight_last"] == 0.4
    assert trained["upper_loss_weight"] == 1.5 and trained["region_loss_weight"] == 1.25


@pytest.mark.parametrize("region", ["dice", "lovasz"])
def test_the_region_weight_scales_the_region_term_beside_the_cross_entropy(region):
    logits, target = _one_piece_batch()   # the one-piece half called upper garment
    up = torch.nn.functional.interpolate(logits, size=target.shape[-2:], mode="bilinear",
                                         align_corners=False)
    ce = float(torch.nn.functional.cross_entropy(up, target))
    assert float(train.loss_fn(logits, target, region=region, region_weight=0.0)) == \
        pytest.approx(ce)
    half, one = (float(train.loss_fn(logits, target, region=region, region_weight=w)) - ce
                 for w in (0.5, 1.0))
    assert half > 0 and one == pytest.approx(2 * half)
    assert float(train.loss_fn(logits, target, region=region)) == pytest.approx(ce + half)


@pytest.mark.parametrize("region", ["dice", "lovasz"])
def test_a_higher_upper_weight_makes_a_missed_upper_garment_cost_more(region):
    logits, target = _one_piece_batch()
    missed = torch.zeros_like(logits)
    missed[:, train.ONE_PIECE_ID] = 4.0  # the upper half called one-piece too
    plain = float(train.loss_fn(missed, target, region=region))
    costs = [float(train.loss_fn(missed, target, region=region, upper_weight=w))
             for w in (1.0, 2.0, 4.0)]
    assert costs[0] == pytest.approx(plain) and costs[0] < costs[1] < costs[2]
    right = missed.clone()
    right[:, train.UPPER_ID, :3] = 8.0  # the logits' upper half is upper garment
    assert float(train.loss_fn(right, target, region=region, upper_weight=4.0)) < costs[0]


@pytest.mark.parametrize("value", ["0", "-0.5", "11", "nan"])
def test_a_one_piece_weight_out_of_range_stops_the_command(value, capsys):
    with pytest.raises(SystemExit) as stop:
        train.parse_args(["--data", "x", "--one-piece-weight-last", value])
    assert stop.value.code == 2 and "--one-piece-weight-last must" in capsys.readouterr().err


def test_dropout_is_an_option_that_changes_training_and_the_file_records(folder, tmp_path):
    plain, dropped = tmp_path / "plain.pt", tmp_path / "dropped.pt"
    run_training(folder, plain, tmp_path / "cache", workers=0)
    run_training(folder, dropped, tmp_path / "cache", workers=0, extra=("--dropout", "0.3"))
    assert weights.load(plain)[1]["dropout"] == 0.0
    assert weights.load(dropped)[1]["dropout"] == 0.3
    a = torch.load(plain, weights_only=True)["state_dict"]
    b = torch.load(dropped, weights_only=True)["state_dict"]
    assert list(a) == list(b) and not all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("option, value", [("--upper-weight", "0"), ("--upper-weight", "-1"),
                                           ("--upper-weight", "10.5"), ("--upper-weight", "nan"),
                                           ("--region-weight", "-0.5"),
                                           ("--region-weight", "11"), ("--region-weight", "nan")])
def test_a_loss_weight_out_of_range_stops_the_command(option, value, capsys):
    with pytest.raises(SystemExit) as stop:
        train.parse_args(["--data", "x", option, value])
    assert stop.value.code == 2 and f"{option} must" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-0.1", "1", "nan"])
def test_a_dropout_out_of_range_stops_the_command(value, capsys):
    with pytest.raises(SystemExit) as stop:
        train.parse_args(["--data", "x", "--dropout", value])
    assert stop.value.code == 2 and "--dropout must" in capsys.readouterr().err
