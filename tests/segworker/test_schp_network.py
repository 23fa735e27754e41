"""The SCHP network: names and shapes against the official manifests, the norm
maths, the resize rule, and output sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segworker.schp.layers import LEAKY_SLOPE, NORM_EPS, SchpNorm, upsample
from segworker.schp.network import SchpNet
from tests.segworker.fixtures.schp_checkpoints import HEAD_NORMS, manifest, norm_names

pytestmark = pytest.mark.usefixtures("one_thread")

#: Output classes per dataset.
CLASSES = {"atr": 18, "lip": 20, "pascal": 7}


def meta_net(dataset: str) -> SchpNet:
    with torch.device("meta"):
        return SchpNet(CLASSES[dataset])


@pytest.fixture(scope="module")
def net() -> SchpNet:
    torch.manual_seed(0)
    return SchpNet(18).eval()


@pytest.mark.parametrize("dataset", ["atr", "lip", "pascal"])
def test_state_dict_matches_official_manifest_key_by_key(dataset):
    expected = manifest(dataset)
    ours = meta_net(dataset).state_dict()
    tracked = [k for k in ours if k.endswith(".num_batches_tracked")]
    ours = {k: tuple(v.shape) for k, v in ours.items() if k not in tracked}
    # BatchNorm2d's counter is the only extra entry: one per norm layer, never in the files.
    assert len(tracked) == 119
    assert len(expected) == 603
    assert list(ours) == [k[len("module."):] for k in expected]
    for key, shape in expected.items():
        assert ours[key[len("module."):]] == shape, key


@pytest.mark.parametrize("dataset", ["atr", "lip", "pascal"])
def test_official_names_load_strictly_after_stripping_module_prefix(dataset):
    state = {k[len("module."):]: torch.empty(shape, device="meta")
             for k, shape in manifest(dataset).items()}
    result = meta_net(dataset).load_state_dict(state, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_leaky_norms_are_exactly_the_thirteen_head_norms():
    norms = meta_net("atr").norm_layers()
    assert sorted(norms) == sorted(norm_names())
    assert sorted(n for n, m in norms.items() if m.leaky) == sorted(HEAD_NORMS)
    assert all(m.eps == NORM_EPS == 1e-5 for m in norms.values())


def _norm(leaky: bool, abs_weight: bool) -> tuple[SchpNorm, torch.Tensor, dict]:
    torch.manual_seed(1)
    norm = SchpNorm(4, leaky=leaky).eval()
    norm.abs_weight = abs_weight
    p = {"w": torch.tensor([-0.5, 0.0, 0.25, -2.0]), "b": torch.tensor([0.1, -0.2, 0.0, 0.3]),
         "m": torch.tensor([0.5, -1.0, 0.0, 2.0]), "v": torch.tensor([1.0, 0.25, 4.0, 0.01])}
    with torch.no_grad():
        for tensor, value in zip((norm.weight, norm.bias, norm.running_mean, norm.running_var),
                                 p.values()):
            assert tensor is not None  # BatchNorm2d keeps running statistics by default
            tensor.copy_(value)
    return norm, torch.randn(2, 4, 3, 5) * 3, p


def _by_hand(x: torch.Tensor, p: dict, gamma: torch.Tensor) -> torch.Tensor:
    x64 = x.double()
    shape = (1, 4, 1, 1)
    y = (x64 - p["m"].double().view(shape)) / torch.sqrt(p["v"].double().view(shape) + 1e-5)
    return y * gamma.double().view(shape) + p["b"].double().view(shape)


def test_head_norm_scales_by_abs_weight_plus_eps_then_leaky_relu():
    norm, x, p = _norm(leaky=True, abs_weight=True)
    expected = _by_hand(x, p, p["w"].abs() + 1e-5)
    expected = torch.where(expected >= 0, expected, expected * 0.01)
    assert LEAKY_SLOPE == 0.01
    torch.testing.assert_close(norm(x.clone()).double(), expected, rtol=1e-6, atol=1e-6)


def test_backbone_norm_has_no_activation():
    norm, x, p = _norm(leaky=False, abs_weight=True)
    out = norm(x.clone())
    torch.testing.assert_close(out.double(), _by_hand(x, p, p["w"].abs() + 1e-5),
                               rtol=1e-6, atol=1e-6)
    assert (out < 0).any()  # negatives pass through untouched


def test_2019_maths_is_plain_batchnorm_with_raw_weight():
    norm, x, p = _norm(leaky=False, abs_weight=False)
    torch.testing.assert_close(norm(x.clone()).double(), _by_hand(x, p, p["w"]),
                               rtol=1e-6, atol=1e-6)
    reference = F.batch_norm(x, p["m"], p["v"], p["w"], p["b"], False, 0.0, 1e-5)
    assert torch.equal(norm(x.clone()), reference)


def test_norm_uses_running_statistics_even_in_train_mode():
    norm, x, p = _norm(leaky=False, abs_weight=True)
    norm.train()
    torch.testing.assert_close(norm(x.clone()).double(), _by_hand(x, p, p["w"].abs() + 1e-5),
                               rtol=1e-6, atol=1e-6)
    assert torch.equal(norm.running_mean, p["m"])


def test_upsample_aligns_corners():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    y = upsample(x, (3, 5))
    # align_corners=True: corner samples are kept exactly, the middle is the mean.
    assert y[0, 0, 0, 0] == 0 and y[0, 0, 0, -1] == 1
    assert y[0, 0, -1, 0] == 2 and y[0, 0, -1, -1] == 3
    assert y[0, 0, 1, 2] == pytest.approx(1.5)
    assert torch.allclose(y[0, 0, 0], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))


def test_fusion_logits_are_at_a_quarter_of_the_input_rounded_up(net):
    # 473 -> 119 for LIP; the same rounding at a small size: 65 -> 33 -> 17.
    with torch.inference_mode():
        logits = net(torch.randn(1, 3, 65, 65))
    assert logits.shape == (1, 18, 17, 17)
    assert torch.isfinite(logits).all()
