"""Throughput and cost-growth measurements run end to end (tiny model, tiny sizes)."""

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
