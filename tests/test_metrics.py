"""Metrics follow the stated protocol; the peers' input rows are reproduced."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from conftest import shared_dataset
from restore_core.io.images import read_image
from restore_core.metrics import psnr, rgb_to_y, ssim, to_uint8_range
from restore_core.io.folders import list_pairs


def test_psnr_identical_is_inf_and_symmetric(rng):
    a = rng.integers(0, 256, (16, 16, 3)).astype(np.float64)
    b = rng.integers(0, 256, (16, 16, 3)).astype(np.float64)
    assert psnr(a, a) == float("inf")
    assert psnr(a, b) == pytest.approx(psnr(b, a))


def test_y_channel_matches_matlab_convention():
    white = np.full((1, 1, 3), 255.0)
    black = np.zeros((1, 1, 3))
    assert rgb_to_y(white)[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(black)[0, 0] == pytest.approx(16.0)


def test_ssim_is_scikit_image_gaussian(rng):
    a = rng.integers(0, 256, (40, 40)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    reference = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert ssim(a, b) == pytest.approx(reference, abs=1e-12)


@pytest.mark.parametrize(
    "dataset, psnr_y, ssim_y, psnr_rgb, ssim_rgb",
    [("Rain100H_dev50", 13.507, 0.3765, 12.104, 0.3461), ("SemiIRR_val20", 22.294, 0.8726, 20.875, 0.8350)],
)
def test_input_rows_match_peers_md(dataset, psnr_y, ssim_y, psnr_rgb, ssim_rgb):
    pairs = list_pairs(shared_dataset(dataset))
    scores = {"py": [], "sy": [], "pr": [], "sr": []}
    for inp, tgt in pairs:
        a, b = to_uint8_range(read_image(inp).rgb), to_uint8_range(read_image(tgt).rgb)
        scores["py"].append(psnr(a, b, "y"))
        scores["sy"].append(ssim(a, b, "y"))
        scores["pr"].append(psnr(a, b, "rgb"))
        scores["sr"].append(ssim(a, b, "rgb"))
    assert np.mean(scores["py"]) == pytest.approx(psnr_y, abs=0.01)
    assert np.mean(scores["sy"]) == pytest.approx(ssim_y, abs=0.001)
    assert np.mean(scores["pr"]) == pytest.approx(psnr_rgb, abs=0.01)
    assert np.mean(scores["sr"]) == pytest.approx(ssim_rgb, abs=0.001)
