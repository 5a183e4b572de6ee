"""Information-flow generator and PatchGAN: shapes, dilations, channel counts, receptive field."""

import torch
from torch import nn

from restore_core.models.infoflow import (
    InfoAccum, InfoAccumConfig, InfoFlowConfig, InfoFlowGenerator, PatchDiscriminator, PatchGANConfig,
)


def test_infoaccum_dilations_paddings_and_channels():
    block = InfoAccum(3, InfoAccumConfig(layers=4, growth=2))
    assert block.out_channels == 3 + 3 * 4 * 2
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.dilation[0], c.padding[0], c.kernel_size[0]) for c in convs[:3]] == [(1, 1, 3), (3, 3, 3), (5, 5, 3)]
    x = torch.rand(1, 3, 21, 17)
    out = block(x)
    assert out.shape == (1, 27, 21, 17)
    assert torch.equal(out[:, :3], x)  # dense: the input is carried through


def test_generator_levels_subpixel_top_and_size():
    config = InfoFlowConfig(levels=3, base_filters=8, info_accum=InfoAccumConfig(layers=2, growth=2))
    gen = InfoFlowGenerator(config)
    assert gen.size_multiple == 8
    assert isinstance(gen.decoders[-1][-1], nn.PixelShuffle)
    y = torch.rand(2, 3, 32, 40)
    out = gen(y)
    assert out.shape == y.shape and out.min() >= 0 and out.max() <= 1
    plain = InfoFlowGenerator(InfoFlowConfig(levels=3, base_filters=8, subpixel_top=False, info_accum=None))
    assert isinstance(plain.decoders[-1][-1], nn.ConvTranspose2d)


def test_patchgan_has_five_convs_and_70px_receptive_field():
    disc = PatchDiscriminator(PatchGANConfig(base_filters=8, norm="none"))
    assert sum(isinstance(m, nn.Conv2d) for m in disc.modules()) == 5
    x = torch.rand(1, 3, 160, 160, requires_grad=True)
    y = torch.rand(1, 3, 160, 160)
    scores = disc(x, y)
    centre = scores[0, 0, scores.shape[2] // 2, scores.shape[3] // 2]
    centre.backward()
    rows = (x.grad[0].abs().sum(dim=(0, 2)) > 0).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70
