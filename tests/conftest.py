from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLES = REPO / "samples" / "rain"


def shared_dataset(name: str) -> Path:
    """A folder of ../shared/data, or skip the test when it is absent (users won't have it)."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is not present")
    return path


@pytest.fixture(autouse=True)
def _torch_thread_count_given_back():
    """Tests that pin torch to one thread (bit-exact resume checks) give the count back
    afterwards. Float convolutions round differently at another thread count, so a later
    test that compares an in-process result with a CLI subprocess's (which uses every
    core) failed when it ran after one of them (test_infoflow.py before test_api.py)."""
    torch = sys.modules.get("torch")  # not imported yet: nothing to give back
    threads = torch.get_num_threads() if torch is not None else None
    yield
    if threads is not None:
        torch.set_num_threads(threads)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A small untrained U-Net checkpoint (fast on CPU), the same in every run: its
    weights come from a fixed seed, not from whatever state earlier tests left."""
    import torch

    from restore_core.checkpoint import save_checkpoint
    from restore_core.models import build_model

    config = {"width": 4, "levels": 1, "blocks_per_level": [1], "bottleneck_blocks": 1}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("unet", config)
    return save_checkpoint(tmp_path / "tiny.safetensors", model, "unet", config, "derain")


def write_random_pngs(folder: Path, count: int, height: int, width: int, seed: int) -> list[Path]:
    """``count`` random 8-bit RGB PNGs named 00.png, 01.png, ... in a new ``folder``."""
    import cv2

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{i:02d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def router_with_scripted_classifier(monkeypatch, answers: list[tuple[str, float]]):
    """``restore auto``'s router whose classifier answers, call by call (one frame each),
    ``(degradation, probability)`` from ``answers``, the other degradations 0.01 each."""
    import torch

    from restore_core.engine.routing import RoutedRestorer
    from restore_core.presets import load_for_task

    router = RoutedRestorer(load_for_task(None, "auto", "cpu"), torch.device("cpu"), "fp32")
    upcoming = iter(answers)

    def classify(x: torch.Tensor) -> torch.Tensor:
        degradation, probability = next(upcoming)
        row = torch.full((1, len(router.degradations)), 0.01)
        row[0, router.degradations.index(degradation)] = probability
        return row

    monkeypatch.setattr(router.classifier, "probabilities", classify)
    return router
