"""Padding and tiling: exact for identity-like models, seamless for real ones."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from restore_core.engine.tiling import run_padded, run_tiled, tile_spans


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    tile=st.integers(8, 64),
    overlap=st.integers(0, 16),
    multiple=st.sampled_from([1, 2, 4, 8]),
)
def test_tiled_identity_reconstructs_exactly(height, width, tile, overlap, multiple):
    x = torch.rand(1, 3, height, width)
    out = run_tiled(lambda t: t, x, tile, min(overlap, tile - 1), multiple)
    assert out.shape == x.shape
    assert torch.allclose(out, x, atol=1e-6)


@settings(max_examples=80, deadline=None)
@given(length=st.integers(1, 500), tile=st.integers(1, 200), overlap=st.integers(0, 50), multiple=st.sampled_from([1, 2, 4, 8, 16]))
def test_tiles_cover_everything_and_start_on_the_size_multiple(length, tile, overlap, multiple):
    tile = max(multiple, -(-tile // multiple) * multiple)  # as run_tiled rounds it
    overlap = min(overlap, tile - 1)
    spans = tile_spans(length, tile, overlap, multiple)
    covered = np.zeros(length, bool)
    for start, end in spans:
        covered[start:end] = True
        assert start % multiple == 0 and end <= length
    assert covered.all() and spans[0][0] == 0 and spans[-1][1] == length
    for (a, a_end), (b, _) in zip(spans, spans[1:]):
        assert a_end - b >= min(overlap, tile - multiple)  # neighbours share the overlap (tiles allowing)


def test_tiles_of_a_downsampling_network_match_the_whole_image_at_odd_sizes():
    """A U-Net with 2 stride-2 levels is shift-equivariant only by multiples of 4: tiles
    starting elsewhere differed from the whole-image output everywhere (17.9 dB on a
    90x77 image, found while testing ADMS). Aligned tiles differ only near tile borders."""
    from restore_core.metrics import psnr
    from restore_core.models import build_model

    torch.manual_seed(2)
    model = build_model("unet", {"width": 4, "levels": 2, "blocks_per_level": [1, 1], "bottleneck_blocks": 1}).eval()
    for height, width in [(90, 77), (101, 66)]:
        x = torch.rand(1, 3, height, width)
        with torch.no_grad():
            whole = run_padded(model, x, 4)
            tiled = run_tiled(model, x, 48, 16, 4)
        assert psnr(whole.numpy() * 255, tiled.numpy() * 255) > 35


def test_padding_crops_back_to_input_size():
    x = torch.rand(1, 3, 13, 17)
    seen = []

    def model(t):
        seen.append(t.shape)
        return t * 2

    out = run_padded(model, x, 8)
    assert seen[0][-2:] == (16, 24) and out.shape == x.shape
    assert torch.allclose(out, 2 * x)


def test_out_of_memory_retries_with_half_the_tile():
    from torch import nn

    from restore_core.checkpoint import ModelDescriptor
    from restore_core.engine.runner import Restorer

    class SmallMemory(nn.Module):
        """The identity, but 'out of memory' on inputs larger than 80x80 (as a GPU would be)."""

        def forward(self, x):
            if x.shape[-1] * x.shape[-2] > 80 * 80:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return x

    descriptor = ModelDescriptor(model=SmallMemory(), architecture="unet", config={}, task="any", name="small", size_multiple=4)
    restorer = Restorer(descriptor, torch.device("cpu"), "fp32", tile=0, tile_overlap=8)
    x = torch.rand(1, 3, 200, 300)
    out = restorer(x)
    assert torch.allclose(out, x, atol=1e-6)  # the identity survives the tiled retry
    assert restorer.tile == 72 and restorer.notices == [
        "out of memory on cpu: retrying with --tile 148", "out of memory on cpu: retrying with --tile 72"]

    class AlwaysOutOfMemory(nn.Module):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    hopeless = Restorer(ModelDescriptor(model=AlwaysOutOfMemory(), architecture="unet", config={}, task="any", name="h"), torch.device("cpu"), "fp32", tile=64, tile_overlap=8)
    with pytest.raises(torch.OutOfMemoryError):  # below the smallest tile (64) the real error goes through
        hopeless(torch.rand(1, 3, 100, 100))


def test_validation_of_an_image_too_large_for_the_device_goes_on_in_tiles():
    """Training's validation ran each image whole: one large image out of GPU memory
    beside the training state ended the run. It is now retried in tiles."""
    from restore_core.engine.tiling import run_whole_or_tiled
    from restore_core.training.trainer import evaluate

    seen = []

    def small_memory(x):
        seen.append(tuple(x.shape[-2:]))
        if x.shape[-1] * x.shape[-2] > 80 * 80:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return x * 0.5

    x = torch.rand(1, 3, 200, 300)
    assert torch.allclose(run_whole_or_tiled(small_memory, x, 4), x * 0.5, atol=1e-6)
    assert seen[0] == (200, 300) and max(h * w for h, w in seen[-4:]) <= 80 * 80  # whole first, then tiles that fit
    with pytest.raises(torch.OutOfMemoryError):  # below the smallest tile the real error goes through
        run_whole_or_tiled(lambda t: (_ for _ in ()).throw(torch.OutOfMemoryError("simulated")), x, 4)

    class Halve(torch.nn.Module):
        def forward(self, t):
            return small_memory(t)

    clean = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    degraded = (clean // 2).astype(np.uint8)
    from restore_core.training.sources import ValidationSet

    metrics, _ = evaluate(Halve(), [ValidationSet("big", [(clean, degraded)])], torch.device("cpu"), 4)
    assert metrics["big/psnr_rgb"] > 40  # clean halved is the reference, to rounding


def test_blend_toward_input_keeps_a_darken_only_output_below_its_input():
    """The blend is linear: an output never brighter than its input (the derainer's
    min(O, y)) stays so at every strength, and the ends are the two images exactly."""
    from restore_core.engine.runner import blend_toward_input

    generator = torch.Generator().manual_seed(0)
    degraded = torch.rand(1, 3, 16, 16, generator=generator)
    restored = torch.minimum(torch.rand(1, 3, 16, 16, generator=generator), degraded)
    assert torch.equal(blend_toward_input(degraded, restored, 0.0), degraded)
    assert torch.equal(blend_toward_input(degraded, restored, 1.0), restored)
    for strength in (0.25, 0.5, 0.9):
        blended = blend_toward_input(degraded, restored, strength)
        assert (blended <= degraded + 1e-7).all() and (blended >= restored - 1e-7).all()
        assert torch.allclose(blended, degraded + strength * (restored - degraded), atol=1e-6)


def test_the_network_gets_an_image_view_in_the_layout_onednn_reads_without_copying():
    """An HWC image seen as a batch of one (no copy) has batch stride 3, which torch calls
    channels_last-contiguous and oneDNN copied in every convolution (0.57 s of the shipped
    denoiser's 2.3 s at 1280x720): the network is handed the strides of a new tensor."""
    import numpy as np
    from torch import nn

    from restore_core.checkpoint import ModelDescriptor
    from restore_core.engine.runner import Restorer
    from restore_core.engine.tiling import dense_channels_last

    strides = []

    class Recorder(nn.Module):
        def forward(self, x):
            strides.append(x.stride())
            return x

    descriptor = ModelDescriptor(model=Recorder(), architecture="unet", config={}, task="any", name="r", size_multiple=8)
    rgb = np.random.default_rng(0).random((16, 24, 3), dtype=np.float32)  # a multiple of 8: no padding makes a new tensor
    out = Restorer(descriptor, torch.device("cpu"), "fp32").restore_array(rgb)
    assert strides == [(16 * 24 * 3, 1, 24 * 3, 3)]
    assert np.array_equal(out, rgb)
    canonical = torch.rand(2, 3, 5, 7).contiguous(memory_format=torch.channels_last)
    assert dense_channels_last(canonical) is canonical  # no copy when there is no need
