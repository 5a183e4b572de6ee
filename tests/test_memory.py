"""The CPU memory guard: measured activation memory, and tiling when it would not fit."""

import pytest
import torch

from restore_core.checkpoint import ModelDescriptor
from restore_core.engine import runner as runner_module
from restore_core.engine.memory import available_memory_bytes, tile_for_budget
from restore_core.models.activation_memory import PeakMemory, activation_bytes_per_pixel
from restore_core.engine.runner import Restorer
from restore_core.engine.tiling import run_tiled
from restore_core.models import build_model


def test_peak_memory_counts_live_storages_once():
    x = torch.rand(1000)  # created outside: not counted
    tracker = PeakMemory()
    with tracker:
        a = x * 2  # 4,000 bytes
        view = a[:500]  # a view: same storage, not counted again
        b = a + 1  # 8,000 live
        del a, view  # a's storage freed
        c = b * 3  # 8,000 live again (b + c)
        del b, c
    assert tracker.peak == 8000 and tracker.live == 0


def test_activation_memory_per_pixel_does_not_depend_on_the_size():
    model = build_model("unet", {"width": 4, "levels": 2, "blocks_per_level": [1, 1], "bottleneck_blocks": 1}).eval()
    small = activation_bytes_per_pixel(model, torch.rand(1, 3, 64, 64))
    large = activation_bytes_per_pixel(model, torch.rand(1, 3, 128, 128))
    assert small > 4 * 3 * 2  # at least the output and one 4-channel map... per pixel, in float32
    assert abs(small - large) / large < 0.05


def test_tile_for_budget():
    assert tile_for_budget(400, 400 * 1000 * 1000, 16) == 992  # sqrt(1e6) = 1000, down to a multiple of 16
    assert tile_for_budget(400, 1.0, 16) == 256  # never below the smallest useful tile


def test_available_memory_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:    1000 kB\n")
    assert available_memory_bytes(meminfo) == 1000 * 1024
    assert available_memory_bytes(tmp_path / "missing") is None


def _restorer(memory_limit: int | None = None) -> Restorer:
    torch.manual_seed(0)  # the same weights each time
    config = {"width": 4, "levels": 1, "blocks_per_level": [1], "bottleneck_blocks": 1}
    descriptor = ModelDescriptor(model=build_model("unet", config), architecture="unet", config=config, task="any", name="tiny", size_multiple=2)
    return Restorer(descriptor, torch.device("cpu"), "fp32", tile=0, tile_overlap=16, memory_limit=memory_limit)


def test_a_large_image_is_tiled_when_it_would_not_fit_in_free_memory(monkeypatch):
    x = torch.rand(1, 3, 600, 1000)
    plenty = _restorer()
    monkeypatch.setattr(runner_module, "available_memory_bytes", lambda: 64 * 2**30)
    whole = plenty(x)
    assert plenty.notices == []

    scarce = _restorer()
    monkeypatch.setattr(runner_module, "available_memory_bytes", lambda: 100 * 2**20)  # 100 MiB free
    tiled = scarce(x)
    assert len(scarce.notices) == 1 and "1000x600 image needs about" in scarce.notices[0] and "tiles of" in scarce.notices[0]
    tile = int(scarce.notices[0].split("tiles of ")[1].split()[0])
    assert 256 <= tile < 1000
    expected = run_tiled(lambda t: scarce.model(t.contiguous(memory_format=torch.channels_last)), x, tile, 16, 2).clamp(0, 1)
    assert torch.allclose(tiled, expected, atol=1e-6)
    assert (tiled - whole).abs().max() < 0.05  # tiling changes little
    scarce(x)
    assert len(scarce.notices) == 1  # said once per image size, not once per image
    assert scarce.tile == 0  # a per-image decision: smaller images still run whole


def test_fixed_costs_are_not_counted_per_pixel():
    """A forward pass that also builds a fixed-size tensor (as ADMS builds its merged
    weights) costs no more per pixel than the bare model."""
    model = build_model("unet", {"width": 4, "levels": 2, "blocks_per_level": [1, 1], "bottleneck_blocks": 1}).eval()

    def with_fixed_cost(x):
        merged = torch.ones(4_000_000)  # 16 MB, 1,000 bytes per pixel of a 128x128 input
        return model(x) + merged[:1].sum()

    example = torch.rand(1, 3, 128, 128)
    bare = activation_bytes_per_pixel(model, example)
    assert activation_bytes_per_pixel(with_fixed_cost, example) == pytest.approx(bare, rel=0.05)


def test_a_memory_limit_tiles_images_that_would_need_more_on_any_size(monkeypatch):
    """--max-memory: the budget is the smaller of the limit and half the free memory, and
    applies to images of any size (the free-memory check alone skips small ones)."""
    monkeypatch.setattr(runner_module, "available_memory_bytes", lambda: 64 * 2**30)
    x = torch.rand(1, 3, 300, 400)  # under MEMORY_CHECK_PIXELS: never checked without a limit
    free = _restorer()
    free(x)
    assert free.notices == []
    limited = _restorer(memory_limit=8 * 2**20)
    needed = 300 * 400 * (limited._activation_bytes_per_pixel() + runner_module.PIPELINE_BYTES_PER_PIXEL)
    assert needed > 8 * 2**20  # the premise: this image needs more than the limit untiled
    out = limited(x)
    assert len(limited.notices) == 1, limited.notices
    notice = limited.notices[0]
    assert notice.startswith("a 400x300 image needs about") and "--max-memory allows 0.0078 GiB" in notice
    tile = int(notice.split("tiles of ")[1].split()[0])
    assert tile == 256 and "(more than that: 256x256 is the smallest tile used)" in notice  # 8 MiB fits no 256 tile
    assert out.shape == x.shape
    roomy = _restorer(memory_limit=int(needed) + 2**20)
    roomy(x)
    assert roomy.notices == []  # within the limit: whole
    with pytest.raises(ValueError, match="must be positive"):
        _restorer(memory_limit=0)
