"""The differentiable SSIM loss gives the numbers the benchmarks report."""

import numpy as np
import torch

from restore_core.metrics import ssim
from restore_core.training.losses import content_loss, luma, ssim_index, ssim_loss


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:40, 0:48]
    clean = np.stack([np.sin(x / 5.0), np.cos(y / 7.0), np.sin((x + y) / 9.0)], axis=-1) * 0.4 + 0.5
    noisy = np.clip(clean + rng.normal(0, 0.08, clean.shape), 0, 1)
    return clean, noisy


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()


def test_ssim_index_matches_scikit_image_on_rgb_and_luma():
    clean, noisy = _pair()
    ours_rgb = ssim_index(_tensor(noisy), _tensor(clean)).item()
    assert abs(ours_rgb - ssim(noisy * 255, clean * 255, space="rgb")) < 1e-4
    ours_y = 1.0 - ssim_loss(_tensor(noisy), _tensor(clean)).item()
    assert abs(ours_y - ssim(noisy * 255, clean * 255, space="y")) < 1e-4


def test_luma_is_matlab_rgb2ycbcr():
    white = torch.ones(1, 3, 1, 1)
    black = torch.zeros(1, 3, 1, 1)
    assert abs(luma(white).item() * 255 - 235.0) < 1e-3
    assert abs(luma(black).item() * 255 - 16.0) < 1e-6


def test_ssim_loss_is_zero_for_identical_images_and_has_gradients():
    clean, noisy = _pair(1)
    target = _tensor(clean)
    assert ssim_loss(target, target).item() < 1e-6
    output = _tensor(noisy).requires_grad_(True)
    loss = content_loss(output, target, "mse", ssim_weight=0.5)
    loss.backward()
    assert loss.item() > torch.nn.functional.mse_loss(output, target).item()
    assert output.grad is not None and output.grad.abs().sum() > 0


def test_ssim_loss_is_exact_under_mixed_precision_autocast():
    """Under bf16 autocast the variance E[x²] − E[x]² cancels to noise (the loss read
    −0.08 for a pair whose 1 − SSIM is 0.05, and a GPU fine-tune collapsed by 3-14 dB);
    the loss must match float32 whatever autocast the trainer runs under."""
    clean, noisy = _pair(1)
    output, target = _tensor(noisy), _tensor(clean)
    exact = ssim_loss(output, target).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ssim_loss(output.bfloat16(), target)
    assert mixed.dtype == torch.float32
    assert abs(mixed.item() - exact) < 2e-3  # bf16 rounding of the inputs only


def test_recipe_ssim_weight_reaches_the_training_objective():
    from dataclasses import replace

    from restore_core.models import build_model
    from restore_core.training.recipes import RECIPES
    from restore_core.training.trainer import restoration_loss

    torch.manual_seed(0)
    tiny = {"width": 4, "levels": 1, "blocks_per_level": [1], "bottleneck_blocks": 1}
    config = {"first_architecture": "unet", "first": tiny, "step_architecture": "unet", "step": tiny, "iterations": 0}
    recipe = replace(RECIPES["golf-deblur"], model=config, steps=2, stages=(2, 0), ssim_weight=0.5)
    model = build_model("golf", config)
    degraded, clean = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    output = model.first(degraded)
    expected = torch.nn.functional.mse_loss(output, clean) + 0.5 * ssim_loss(output, clean)
    assert torch.allclose(restoration_loss(model, degraded, clean, recipe, stage=1), expected)
