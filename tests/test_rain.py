"""Synthetic rain: deterministic, bounded, and shaped by its parameters."""

import numpy as np

from restore_core.degradations.rain import RainConfig, RainScene, StreakLayer, add_rain, motion_kernel, rain_sheet, render_rain, sample_rain


def test_same_seed_same_rain():
    clean = np.full((64, 64, 3), 0.3, np.float32)
    a = add_rain(clean, np.random.default_rng(1))
    b = add_rain(clean, np.random.default_rng(1))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, add_rain(clean, np.random.default_rng(2)))


def test_rain_brightens_and_stays_in_range():
    clean = np.full((96, 96, 3), 0.2, np.float32)
    rainy = add_rain(clean, np.random.default_rng(0), RainConfig(heavy_probability=0.0))
    assert rainy.dtype == np.float32 and rainy.min() >= 0 and rainy.max() <= 1
    assert rainy.mean() > clean.mean() and (rainy >= clean - 1e-6).all()  # additive streaks only


def test_density_controls_amount_of_rain():
    clean = np.zeros((128, 128), np.float32)

    def amount(density):
        layer = StreakLayer(density=density, length=20, angle=10, width=0.8, brightness=0.8)
        return render_rain(clean, RainScene((layer,), 0.0, 1.0), np.random.default_rng(0)).mean()

    assert amount(0.02) > 2 * amount(0.002)


def test_haze_veil_lifts_dark_pixels_towards_atmospheric_light():
    clean = np.zeros((32, 32, 3), np.float32)
    scene = RainScene((), veil=0.3, veil_light=0.9)
    assert np.allclose(render_rain(clean, scene, np.random.default_rng(0)), 0.27)


def test_motion_kernel_is_normalised_and_oriented():
    vertical = motion_kernel(15, 0)
    assert np.isclose(vertical.sum(), 1.0)
    assert vertical[:, 7].sum() > 0.75  # a vertical line through the centre column
    assert np.isclose(vertical[:, 6].sum(), vertical[:, 8].sum(), atol=1e-6)
    slanted = motion_kernel(15, 45)
    assert np.trace(slanted) > 0.5 and np.trace(np.fliplr(slanted)) < 0.2  # leans right: top-left to bottom-right


def test_rain_sheet_is_an_uneven_additive_lift_within_its_strength():
    sheet = rain_sheet(160, 200, 0.4, 40.0, 0.0, np.random.default_rng(3))
    assert sheet.shape == (160, 200) and sheet.dtype == np.float32
    assert sheet.min() >= 0.4 * 0.3 * 0.5 - 1e-6 and sheet.max() <= 0.4 + 1e-6  # a lift everywhere, bounded
    columns = sheet.mean(axis=0)
    assert columns.max() - columns.min() > 0.05  # brighter in some parts of the frame than others
    # Long along the rain: neighbouring rows differ far less than neighbouring columns.
    assert np.abs(np.diff(sheet, axis=0)).mean() < 0.5 * np.abs(np.diff(sheet, axis=1)).mean()


def test_sheet_probability_adds_a_sheet_and_zero_draws_nothing_extra():
    clean = np.full((64, 64, 3), 0.2, np.float32)
    # Default (no sheets): the random stream is untouched, so the bundled samples keep their rain.
    scene = sample_rain(RainConfig(), np.random.default_rng(5))
    assert scene.sheet == 0 and scene == sample_rain(RainConfig(sheet_probability=0.0), np.random.default_rng(5))
    config = RainConfig(layers=(0, 0), heavy_probability=0.0, sheet_probability=1.0, sheet=(0.3, 0.3))
    scene = sample_rain(config, np.random.default_rng(5))
    assert scene.sheet == 0.3
    rainy = render_rain(clean, scene, np.random.default_rng(6))
    assert (rainy >= clean - 1e-6).all() and rainy.mean() > clean.mean() + 0.3 * 0.3 * 0.5
