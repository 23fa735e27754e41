"""The parser's pure parts: class map, crop geometry, batch-norm folding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segworker.parser import crop
from segworker.parser.classes import CCP_CLASSES, CCP_GROUPS, CLASS_NAMES, ccp_lookup
from segworker.parser.infer import photo_matrix
from segworker.parser.network import NetShape, ParserNet, fuse_batch_norms
from segworker.parser.person import person_box


def test_every_ccp_class_has_exactly_one_parser_class():
    ids = [i for group in CCP_GROUPS.values() for i in group]
    assert sorted(ids) == list(range(1, CCP_CLASSES))  # 0 is background
    table = ccp_lookup()
    assert table[0] == 0 and table[200] == 0
    assert CLASS_NAMES[table[14]] == "one_piece"      # dress
    assert CLASS_NAMES[table[35]] == "one_piece"      # romper
    assert CLASS_NAMES[table[46]] == "upper_garment"  # CCP's suit is the jacket
    assert CLASS_NAMES[table[25]] == "lower_garment"  # jeans
    assert CLASS_NAMES[table[2]] == "accessory"       # bag
    assert CLASS_NAMES[table[43]] == "shoes"          # sneakers


def test_fit_box_keeps_the_centre_and_takes_the_input_aspect():
    cx, cy, w, h = crop.fit_box((100, 50, 200, 450), margin=0.0)  # tall: 100 x 400
    assert (cx, cy) == (150, 250)
    assert h == pytest.approx(400) and h / w == pytest.approx(crop.INPUT_H / crop.INPUT_W)
    cx, cy, w, h = crop.fit_box((0, 0, 300, 100), margin=0.1)     # wide
    assert w == pytest.approx(360) and h / w == pytest.approx(crop.INPUT_H / crop.INPUT_W)


def test_crop_matrix_maps_the_box_onto_the_input():
    m = crop.crop_matrix(150, 250, 200, 300)
    corners = np.array([[50, 100, 1], [250, 400, 1]], dtype=np.float64) @ m.T
    np.testing.assert_allclose(corners, [[0, 0], [crop.INPUT_W, crop.INPUT_H]], atol=1e-9)
    flipped = crop.crop_matrix(150, 250, 200, 300, flip=True)
    np.testing.assert_allclose(np.array([50, 100, 1.0]) @ flipped.T, [crop.INPUT_W, 0], atol=1e-9)


def test_labels_come_back_where_they_were_in_the_photo():
    """A label map cropped into the input, turned into one-hot logits at the
    output stride and pasted back, lands on the same photo pixels."""
    h, w = 600, 400
    labels = np.zeros((h, w), np.uint8)
    labels[100:300, 120:280] = 1
    labels[300:520, 140:260] = 2
    m = crop.crop_matrix(*crop.fit_box((100, 80, 300, 540)))
    cropped = crop.crop_image(labels, m, interpolation=0)
    small = cropped[crop.OUTPUT_STRIDE // 2::crop.OUTPUT_STRIDE, crop.OUTPUT_STRIDE // 2::crop.OUTPUT_STRIDE]
    logits = np.stack([(small == c).astype(np.float32) for c in range(3)])
    back = crop.labels_in_photo(logits, m, h, w)
    assert back.shape == (h, w) and back.dtype == np.uint8
    assert (back == labels).mean() > 0.99


@pytest.mark.parametrize("angle", [0.0, 9.0])
def test_only_pixels_near_a_change_of_class_are_interpolated_and_the_labels_hold(angle):
    """Against interpolating every class at every pixel (the definition), on
    smooth random logits with many boundaries, upright and rotated."""
    import cv2
    rng = np.random.default_rng(int(angle))
    noise = rng.normal(size=(crop.INPUT_H // 2, crop.INPUT_W // 2, 8)).astype(np.float32)
    logits = (cv2.GaussianBlur(noise, (0, 0), 5) * 50).transpose(2, 0, 1).copy()
    m = crop.crop_matrix(200, 310, 380, 570, angle_deg=angle)
    full = cv2.warpAffine(np.ascontiguousarray(logits.transpose(1, 2, 0)),
                          crop.output_matrix(m), (400, 620),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE).argmax(axis=2)
    back = crop.labels_in_photo(logits, m, 620, 400)
    inside = crop._photo_extent(m, 620, 400)
    x0, y0, x1, y1 = inside
    assert len(np.unique(back)) == 8
    assert (back[y0:y1, x0:x1] != full[y0:y1, x0:x1]).mean() < 1e-3


def test_photo_outside_the_crop_is_background():
    m = crop.crop_matrix(*crop.fit_box((10, 10, 60, 60), margin=0.0))
    logits = np.zeros((3, crop.INPUT_H // 2, crop.INPUT_W // 2), np.float32)
    logits[1] = 5.0  # everything inside the crop is class 1
    back = crop.labels_in_photo(logits, m, 300, 300)
    assert back[30, 30] == 1 and back[200, 200] == 0 and back[5, 280] == 0


def test_person_box_picks_the_large_central_figure_over_a_passer_by():
    prob = np.zeros((400, 600), np.float32)
    prob[50:380, 250:350] = 0.9       # the subject, in the middle
    prob[300:360, 10:40] = 0.9        # someone small at the edge
    assert person_box(prob) == (250, 50, 350, 380)
    assert person_box(np.zeros((50, 50), np.float32)) is None
    assert photo_matrix(prob).shape == (2, 3)
    assert photo_matrix(np.zeros((50, 50), np.float32)) is None


def test_folding_batch_norms_computes_the_same_function():
    torch.manual_seed(0)
    net = ParserNet(NetShape(widths=(8, 8, 16, 16, 16), decoder_width=8))
    net.train()
    with torch.no_grad():  # give the norms statistics that are not the identity
        for _ in range(3):
            net(torch.randn(2, 4, 64, 48))
    net.eval()
    x = torch.randn(1, 4, 64, 48)
    with torch.no_grad():
        expected = net(x)
        got = fuse_batch_norms(net)(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert got.shape == (1, len(CLASS_NAMES), 32, 24)


def test_dropout_is_a_training_setting_the_weights_and_inference_do_not_see():
    """The same tensors to save and load, the same logits in eval mode; in
    training some feature channels are dropped, so the logits change."""
    small = NetShape(widths=(8, 8, 16, 16, 16), decoder_width=8)
    torch.manual_seed(0)
    plain = ParserNet(small)
    dropped = ParserNet(small, dropout=0.5)
    assert list(dropped.state_dict()) == list(plain.state_dict())
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(dropped.eval()(x), plain.eval()(x))
        plain.train(), dropped.train()
        assert not torch.allclose(dropped(x), plain(x))


def test_one_piece_needs_most_of_the_garment_probability():
    from segworker.parser.infer import resolve_one_piece
    logits = np.full((8, 1, 3), -5.0, np.float32)
    logits[1:4, 0, 0] = [0.0, 1.0, 1.2]   # one-piece a plurality only: goes to lower
    logits[1:4, 0, 1] = [-3.0, -3.0, 2.0]  # a clear one-piece stays
    logits[1:4, 0, 2] = [2.0, 0.0, 0.0]   # upper stays upper
    out = resolve_one_piece(logits).argmax(axis=0)[0]
    assert list(out) == [2, 3, 1]
    assert logits[3, 0, 0] == np.float32(1.2)  # the input is not changed
