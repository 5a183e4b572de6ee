"""Throughput and cost-growth measurements run end to end (tiny model, tiny sizes)."""

import pytest
import torch

from restore_core.checkpoint import load_checkpoint
from restore_core.engine.runner import Restorer
from restore_core.engine.speed import measure_growth, measure_speed, measure_startup


def test_speed_and_growth_measurements_run(tiny_checkpoint):
    restorer = Restorer(load_checkpoint(tiny_checkpoint), torch.device("cpu"), "fp32")
    speed = measure_speed(restorer, 48, 32, count=2, rounds=1)
    assert speed.bare_images_per_s > 0 and speed.end_to_end_images_per_s > 0
    points = measure_growth(restorer, counts=(2, 4), small=(32, 32), sizes=((32, 32), (64, 64)), per_size=1)
    assert [(p.label, p.images, p.width) for p in points] == [("images", 2, 32), ("images", 4, 32), ("pixels", 1, 32), ("pixels", 1, 64)]
    assert all(p.seconds > 0 and p.seconds_per_megapixel > 0 for p in points)
    assert measure_startup(str(tiny_checkpoint)) > 0


def test_compile_falls_back_to_eager_with_a_notice(tiny_checkpoint):
    restorer = Restorer(load_checkpoint(tiny_checkpoint), torch.device("cpu"), "fp32", compile=True)
    eager = Restorer(load_checkpoint(tiny_checkpoint), torch.device("cpu"), "fp32")

    def broken(x):
        raise RuntimeError("InductorError: no working C++ compiler\nmore detail")

    restorer.compiled = broken
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(restorer(x), eager(x))
    assert restorer.compiled is None
    assert restorer.notices == ["torch.compile failed (InductorError: no working C++ compiler); running without it"]


@pytest.mark.slow
def test_compiled_model_matches_eager(tiny_checkpoint):
    """The real Inductor path (about half a minute to compile on 2 cores)."""
    restorer = Restorer(load_checkpoint(tiny_checkpoint), torch.device("cpu"), "fp32", compile=True)
    eager = Restorer(load_checkpoint(tiny_checkpoint), torch.device("cpu"), "fp32")
    x = torch.rand(1, 3, 24, 32)
    assert torch.allclose(restorer(x), eager(x), atol=1e-5)
    assert restorer.compiled is not None and not restorer.notices  # it really ran compiled
