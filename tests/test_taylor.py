"""Equations 19-21 of the Taylor framework, checked on hand-made tensors."""

import math

import torch
from torch import nn

from restore_core.models import build_model
from restore_core.models.taylor import TaylorNet, taylor_loss, taylor_sum


class Scale(nn.Module):
    """F(y) = a * y."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = a

    def forward(self, y):
        return self.a * y


class Affine(nn.Module):
    """F(y) = 0.5 - 0.5 * y: crosses y, so the Taylor output is brighter than y in places."""

    def forward(self, y):
        return 0.5 - 0.5 * y


class HalfSum(nn.Module):
    """G(concat[g, y]) = 0.5 * g + 0.25 * y (channels split in half)."""

    def forward(self, gy):
        c = gy.shape[1] // 2
        return 0.5 * gy[:, :c] + 0.25 * gy[:, c:]


def test_order_zero_is_the_mapping_network():
    y = torch.rand(2, 3, 8, 8)
    net = TaylorNet(Scale(0.7), HalfSum(), order=0)
    assert torch.equal(net(y), 0.7 * y)


def test_order_n_matches_hand_computed_series():
    y = torch.rand(1, 3, 5, 5)
    f_out = 0.7 * y
    g, expected = f_out, f_out.clone()
    for k in range(1, 4):
        g = 0.5 * g + 0.25 * y  # Eq. 19 with the G above
        expected = expected + g / math.factorial(k)  # Eq. 20
    out = TaylorNet(Scale(0.7), HalfSum(), order=3).expand(y)
    assert torch.allclose(out.restored, expected, atol=1e-7)
    assert torch.equal(out.mapping, f_out)
    assert len(out.derivatives) == 3


def test_eq17_term_adds_k_times_previous_order():
    y = torch.rand(1, 3, 4, 4)
    f_out = 0.7 * y
    g1 = 0.5 * f_out + 0.25 * y  # k = 0: no extra term
    g2 = 0.5 * g1 + 0.25 * y + 1 * g1  # k = 1
    expected = f_out + g1 + g2 / 2
    out = TaylorNet(Scale(0.7), HalfSum(), order=2, eq17_term=True)(y)
    assert torch.allclose(out, expected, atol=1e-7)


def test_taylor_sum_and_loss_eq21():
    x = torch.zeros(1, 1, 2, 2)
    f_out = torch.full_like(x, 0.5)
    g = [torch.full_like(x, 0.2), torch.full_like(x, 0.4)]
    assert torch.allclose(taylor_sum(f_out, g), torch.full_like(x, 0.5 + 0.2 + 0.2))
    out = TaylorNet(Scale(1.0), HalfSum(), order=1).expand(torch.full((1, 1, 2, 2), 0.5).repeat(1, 2, 1, 1)[:, :1])
    loss = taylor_loss(out, x, mapping_weight=1.0)
    assert torch.allclose(loss, out.restored.abs().mean() + out.mapping.abs().mean())


def test_wraps_any_backbone_from_the_table_and_keeps_size():
    net = build_model("taylor", {"mapping": {"width": 4, "levels": 2, "blocks_per_level": [1, 1]}, "order": 3})
    y = torch.rand(1, 3, 32, 48)
    assert net(y).shape == y.shape
    assert net.size_multiple == 4


def test_growing_the_mapping_unet_with_a_refinement_head_starts_unchanged():
    """A Taylor model whose F gains a zero-initialised full-resolution head computes the
    same image as before growth, and the head's last layer receives a gradient."""
    mapping = {"width": 4, "levels": 2, "blocks_per_level": [1, 1], "bottleneck_blocks": 1}
    config = {"mapping_architecture": "unet", "mapping": mapping, "derivative": {"image_channels": 3, "hidden_channels": 4}, "order": 2}
    base = build_model("taylor", config)
    grown = build_model("taylor", {**config, "mapping": {**mapping, "refine": 8}})
    result = grown.load_state_dict(base.state_dict(), strict=False)
    assert not result.unexpected_keys and result.missing_keys and all(".refine." in k for k in result.missing_keys)
    y = torch.rand(1, 3, 16, 20)
    assert torch.equal(grown(y), base(y))
    grown(y).mean().backward()
    assert grown.mapping.refine[-1].weight.grad.abs().sum() > 0


def test_darken_only_projects_the_output_onto_min_of_output_and_input():
    """``darken_only``: forward returns min(O, y) (never brighter than the input), the
    training expansion keeps Eq. 20's O, and where the clean image is no brighter than the
    input the projection never moves a pixel away from it."""
    torch.manual_seed(0)
    y = torch.rand(2, 3, 6, 7)
    net = TaylorNet(Affine(), HalfSum(), order=2, darken_only=True)
    plain = TaylorNet(Affine(), HalfSum(), order=2)
    o = plain(y)
    assert (o > y).any() and (o < y).any()  # the series overshoots somewhere: the case matters
    assert torch.equal(net(y), torch.minimum(o, y))
    assert torch.equal(net.expand(y).restored, o)  # Eq. 21 trains the unprojected O
    x = y * torch.rand_like(y)  # a clean image no brighter than the input
    assert ((net(y) - x).abs() <= (o - x).abs()).all()
    assert ((net(y) - x).abs() < (o - x).abs()).any()
    net.set_darken_only(False)
    assert torch.equal(net(y), o)


def test_darken_only_is_a_config_switch_that_round_trips(tmp_path):
    from restore_core.checkpoint import load_checkpoint, save_checkpoint

    config = {"mapping": {"width": 4, "levels": 1, "blocks_per_level": [1], "bottleneck_blocks": 1}, "order": 1, "darken_only": True}
    model = build_model("taylor", config)
    assert model.darken_only and not build_model("taylor", {**config, "darken_only": False}).darken_only
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model, "taylor", config, "derain"))
    assert loaded.model.darken_only and loaded.config["darken_only"] is True
    y = torch.rand(1, 3, 8, 8)
    assert (loaded.model(y) <= y).all()
