"""Temporal smoothing of restored video frames (engine.temporal): alignment, the adaptive
weights, scene cuts, and the streaming order a resumed video relies on."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from restore_core.engine.temporal import (
    SAME_SCENE_CORRELATION, TemporalConfig, TemporalSmoother, bandwidth, low_pass, match_exposure, patch_distance, scene_correlation,
    upscale_flow, warp,
)
from restore_core.metrics import psnr


def scene(rng: np.random.Generator, height: int = 96, width: int = 128) -> np.ndarray:
    """A textured picture (uint8 RGB) with a photograph's contrast, that optical flow can lock onto."""
    blurred = cv2.GaussianBlur(rng.normal(0, 1, (height, width, 3)).astype(np.float32), (0, 0), 2.5)
    return np.clip(128 + 50 * blurred / blurred.std(), 0, 255).astype(np.uint8)


def noisy(clean: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return np.clip(clean + rng.normal(0, sigma, clean.shape) + 0.5, 0, 255).astype(np.uint8)


def smoothed(frames: list[np.ndarray], radius: int = 2, context: int = 0, workers: int = 1) -> list[np.ndarray]:
    """Every frame through a smoother; the first ``context`` as neighbours only."""
    smoother = TemporalSmoother(TemporalConfig(radius=radius), workers)
    out = []
    for index, frame in enumerate(frames):
        out += smoother.push(frame, index, emit=index >= context)
    out += smoother.flush()
    smoother.close()
    assert [stamp for _, stamp in out] == list(range(context, len(frames)))  # each once, in order, with its stamp
    return [frame for frame, _ in out]


def test_warp_by_a_constant_flow_moves_the_picture_and_says_what_fell_outside(rng):
    frame = scene(rng)
    flow = np.zeros(frame.shape[:2] + (2,), np.float32)
    flow[..., 0] = 3  # each pixel looks 3 pixels to its right
    warped, inside = warp(frame, flow)
    assert np.array_equal(warped[:, :-3], frame[:, 3:].astype(np.float32))
    assert inside[:, :-3].all() and not inside[:, -3:].any()


def test_a_flow_computed_small_is_scaled_to_the_frame():
    flow = np.full((45, 80, 2), 1.5, np.float32)
    big = upscale_flow(flow, 90, 160)
    assert big.shape == (90, 160, 2) and np.allclose(big, 3.0)


def test_patch_distance_is_the_mean_squared_difference_over_the_patch():
    centre = np.zeros((9, 9, 3), np.float32)
    other = np.zeros((9, 9, 3), np.float32)
    other[4, 4] = 9.0  # one pixel off by 9 in every channel: 81 spread over a 3 x 3 patch
    distance = patch_distance(centre, other, 3)
    assert distance[4, 4] == pytest.approx(9.0) and distance[3, 3] == pytest.approx(9.0) and distance[0, 0] == 0


def test_each_neighbour_gets_the_bandwidth_of_its_own_typical_distance():
    distance = np.full((8, 8), 10.0, np.float32)
    distance[:2] = 500.0  # an occluded strip does not move the median
    assert bandwidth(distance, strength=4.0) == 40.0
    assert bandwidth(np.full((8, 8), np.inf, np.float32), strength=4.0) is None  # nothing inside


def test_scene_correlation_tells_the_same_scene_under_noise_from_another_one(rng):
    first, second = scene(rng), scene(rng)
    inside = np.ones(first.shape[:2], bool)
    assert scene_correlation(first, noisy(first, rng, 25).astype(np.float32), inside) > 0.95
    assert scene_correlation(first, second.astype(np.float32), inside) < SAME_SCENE_CORRELATION
    assert scene_correlation(first, np.full_like(first, 128, dtype=np.float32), inside) == 0.0  # a flat frame


def test_a_still_noisy_scene_is_averaged_towards_the_clean_one(rng):
    clean = scene(rng)
    frames = [noisy(clean, rng, 12) for _ in range(7)]
    before = np.mean([psnr(frame, clean) for frame in frames])
    after = np.mean([psnr(frame, clean) for frame in smoothed(frames)])
    assert after > before + 2.0  # up to 5 frames averaged where they agree (measured: about +3.5 dB)


def test_a_panning_scene_is_aligned_before_it_is_averaged(rng):
    wide = scene(rng, width=200)
    clean = [np.ascontiguousarray(wide[:, 6 * i : 6 * i + 128]) for i in range(7)]
    frames = [noisy(frame, rng, 12) for frame in clean]
    before = np.mean([psnr(a, b) for a, b in zip(frames, clean)])
    after = np.mean([psnr(a, b) for a, b in zip(smoothed(frames), clean)])
    unaligned = [np.mean(frames[max(0, i - 2) : i + 3], axis=0) for i in range(len(frames))]  # what averaging in place would give
    assert after > before + 1.5
    assert after > np.mean([psnr(np.clip(a + 0.5, 0, 255).astype(np.uint8), b) for a, b in zip(unaligned, clean)]) + 3


def test_frames_across_a_scene_cut_are_not_blended(rng):
    first, second = scene(rng), scene(rng)
    frames = [noisy(first, rng, 8) for _ in range(4)] + [noisy(second, rng, 8) for _ in range(4)]
    out = smoothed(frames)
    clean = [first] * 4 + [second] * 4
    assert all(psnr(a, c) > psnr(b, c) + 0.5 for a, b, c in zip(out, frames, clean))  # each averaged within its own shot
    # what a blend across the cut would do: frame 3 averaged with 4 and 5 of the other shot
    assert psnr(np.mean(frames[1:6], axis=0).astype(np.uint8), first) < psnr(frames[3], first) - 3


def test_context_frames_make_a_resumed_stream_equal_an_uninterrupted_one(rng):
    clean = scene(rng)
    frames = [noisy(clean, rng, 10) for _ in range(8)]
    straight = smoothed(frames)
    resumed = smoothed(frames[3:], context=2)  # output 0-4 written earlier; frames 3-4 pushed again as neighbours
    assert all(np.array_equal(a, b) for a, b in zip(straight[5:], resumed))


def test_frames_smoothed_in_threads_come_out_in_order_and_equal(rng):
    wide = scene(rng, width=220)
    frames = [noisy(np.ascontiguousarray(wide[:, 5 * i : 5 * i + 128]), rng, 10) for i in range(12)]
    one_thread = smoothed(frames)
    three = smoothed(frames, workers=3)  # the helper checks each frame comes once, in order
    assert all(np.array_equal(a, b) for a, b in zip(one_thread, three))


def test_exposure_matching_gives_a_neighbour_the_centres_brightness_and_keeps_its_detail(rng):
    centre = scene(rng, 128, 160).astype(np.float32)
    brighter = centre * 1.2 + 25  # the same scene, lit by a flash
    matched = match_exposure(low_pass(centre), brighter)
    assert abs(matched.mean() - centre.mean()) < 1.0
    detail = brighter - low_pass(brighter)
    assert np.allclose(matched - low_pass(matched), detail, atol=2.0)  # only the coarse brightness moved


def test_a_flash_stays_in_its_frame_and_does_not_light_its_neighbours(rng):
    """Lightning in a rainy clip: one frame much brighter. Before exposure matching the
    GoPro clip's flash (mean 131 -> 192 levels) came out at 147 and lit its neighbours by 14."""
    wide = scene(rng, width=220)
    frames = [noisy(np.ascontiguousarray(wide[:, 5 * i : 5 * i + 128]), rng, 6).astype(np.float32) for i in range(7)]
    frames[3] = frames[3] * 1.3 + 40
    frames = [np.clip(frame, 0, 255).astype(np.uint8) for frame in frames]
    out = smoothed(frames)
    assert abs(out[3].mean() - frames[3].mean()) < 3
    assert all(abs(a.mean() - b.mean()) < 2 for a, b in zip(out, frames))


def test_the_radius_is_bounded():
    with pytest.raises(ValueError, match="between 0"):
        TemporalConfig(radius=9)
    with pytest.raises(ValueError):
        TemporalSmoother(TemporalConfig(radius=0))
