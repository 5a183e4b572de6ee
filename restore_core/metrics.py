"""Image quality metrics with a stated protocol.

PSNR and SSIM are computed per image on 8-bit-range values (data range 255),
either over RGB or on the Y channel of ITU-R BT.601 YCbCr with MATLAB's
``rgb2ycbcr`` convention (``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G,
B in [0, 1]). SSIM is scikit-image's ``structural_similarity`` with
``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` — the protocol
of ../shared/PEERS.md and of most restoration papers.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from skimage.metrics import structural_similarity

Space = Literal["rgb", "y"]


def to_uint8_range(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> float64 values rounded to the 8-bit grid (as if saved as PNG)."""
    return np.round(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0)


# ITU-R BT.601 luma as MATLAB's rgb2ycbcr: Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in [0, 1]).
LUMA_OFFSET = 16.0
LUMA_WEIGHTS = (65.481, 128.553, 24.966)


def rgb_to_y(rgb255: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` luma of an H x W x 3 RGB array in [0, 255] (float64)."""
    r, g, b = rgb255[..., 0] / 255.0, rgb255[..., 1] / 255.0, rgb255[..., 2] / 255.0
    return LUMA_OFFSET + LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


def _in_space(image255: np.ndarray, space: Space) -> np.ndarray:
    if space == "y" and image255.ndim == 3 and image255.shape[2] == 3:
        return rgb_to_y(image255)
    return image255


def crop_border(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border > 0 else image


def psnr(restored255: np.ndarray, target255: np.ndarray, space: Space = "rgb", border: int = 0) -> float:
    """PSNR in dB of two images in [0, 255]; identical images give ``inf``."""
    a = crop_border(_in_space(restored255.astype(np.float64), space), border)
    b = crop_border(_in_space(target255.astype(np.float64), space), border)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


SSIM_MIN_SIZE = 11  # scikit-image's Gaussian window for sigma 1.5: 2 * int(3.5 * 1.5 + 0.5) + 1


def ssim(restored255: np.ndarray, target255: np.ndarray, space: Space = "rgb", border: int = 0) -> float:
    """SSIM of two images in [0, 255] (scikit-image, Gaussian window, sigma 1.5)."""
    a = crop_border(_in_space(restored255.astype(np.float64), space), border)
    b = crop_border(_in_space(target255.astype(np.float64), space), border)
    channel_axis = 2 if a.ndim == 3 else None
    if min(a.shape[:2]) < SSIM_MIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} pixels (Gaussian window, sigma 1.5), got {a.shape[0]}x{a.shape[1]}")
    return float(
        structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.0, channel_axis=channel_axis
        )
    )
