"""Noise, motion blur and haze: the formulas hold and randomness is seeded."""

import cv2
import numpy as np
import pytest

from restore_core.degradations.blur import add_motion_blur, blur_image, motion_blur_kernel, trajectory
from restore_core.degradations.haze import add_haze, depth_proxy, render_haze
from restore_core.degradations.noise import NoiseConfig, add_noise, gaussian_noise, jpeg_noise, poisson_gaussian_noise
from restore_core.degradations.noise_level import estimate_noise_level, measured_noise_level


def test_gaussian_noise_has_the_requested_sigma():
    clean = np.full((200, 200), 0.5, np.float32)
    noisy = gaussian_noise(clean, 25, np.random.default_rng(0))
    assert np.std(noisy - clean) * 255 == pytest.approx(25, rel=0.03)


@pytest.mark.parametrize("sigma, tolerance", [(5, 0.02), (25, 0.04), (50, 0.10)])
def test_measured_noise_level_reads_sigma_from_photo_patches(sigma, tolerance):
    """Patches of a real photograph (dark and bright areas, so clipping happens)."""
    import torch
    from skimage import data

    photo = data.astronaut().astype(np.float32) / 255.0
    rng = np.random.default_rng(sigma)
    corners = rng.integers(0, 512 - 128, (16, 2))
    clean = np.stack([photo[y : y + 128, x : x + 128] for y, x in corners])
    noisy = np.stack([gaussian_noise(patch, sigma, rng) for patch in clean])
    as_batch = lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy())
    measured = measured_noise_level(as_batch(noisy), as_batch(clean))
    assert measured.shape == (16,)
    assert abs(measured.mean().item() / sigma - 1) < tolerance
    assert measured_noise_level(as_batch(clean), as_batch(clean)).abs().max() == 0


# astronaut has large black and white areas, where clipping removes much of heavy noise
@pytest.mark.parametrize("sigma, low, high", [(0, 0.0, 2.5), (5, 4.5, 6.5), (25, 23.5, 27.0), (50, 46.0, 52.0)])
def test_estimate_noise_level_reads_sigma_from_the_noisy_photo_alone(sigma, low, high):
    """Block-wise Donoho-Johnstone estimate on a whole photograph: close to sigma from
    clean to heavy noise; each image of a batch gets its own estimate."""
    import torch
    from skimage import data

    photo = data.astronaut().astype(np.float32) / 255.0
    noisy = gaussian_noise(photo, sigma, np.random.default_rng(sigma)) if sigma else photo
    flat = gaussian_noise(np.full((64, 64, 3), 0.5, np.float32), 20, np.random.default_rng(1))
    as_batch = lambda *a: torch.from_numpy(np.stack(a).transpose(0, 3, 1, 2).copy())  # noqa: E731
    estimate = estimate_noise_level(as_batch(noisy))
    assert estimate.shape == (1,) and low <= estimate.item() <= high
    both = estimate_noise_level(torch.cat([as_batch(noisy[:64, :64]), as_batch(flat)]))
    assert both[1].item() == pytest.approx(20, rel=0.1)  # no texture: the noise alone
    assert torch.isnan(estimate_noise_level(torch.zeros(2, 3, 1, 5))).all()  # too small to tell
    tiny = estimate_noise_level(as_batch(flat[:20, :20]))  # too few blocks: the whole-image median
    assert tiny.item() == pytest.approx(20, rel=0.25)


@pytest.mark.parametrize("sigma", [2, 5, 20])
def test_estimate_noise_level_is_calibrated_on_pure_noise(sigma):
    """The 10 % quantile of the block estimates is divided by its value on pure Gaussian
    noise (NOISE_BLOCK_QUANTILE_TO_SIGMA), so pure noise reads sigma."""
    import torch

    pure = 0.5 + np.random.default_rng(sigma).normal(0, sigma / 255, (1, 1, 512, 512))
    assert estimate_noise_level(torch.from_numpy(pure.astype(np.float32))).item() == pytest.approx(sigma, rel=0.04)


def test_estimate_noise_level_leaves_out_clipped_areas():
    """Half the image saturated (white): noise there is clipped away; the whole-image
    median reads the level a third low, the block estimate leaves those blocks out."""
    import torch

    from restore_core.degradations.noise_level import MAD_TO_SIGMA, _diagonal_detail

    image = np.full((256, 256, 3), 0.5, np.float32)
    image[:, :128] = 1.0
    noisy = torch.from_numpy(gaussian_noise(image, 30, np.random.default_rng(3)).transpose(2, 0, 1)[None].copy())
    whole_median = 255 * _diagonal_detail(noisy).abs().flatten(2).median(dim=2).values.mean() / MAD_TO_SIGMA
    assert whole_median.item() < 24  # the bias the blocks remove
    assert estimate_noise_level(noisy).item() == pytest.approx(30, rel=0.05)


def test_poisson_gaussian_noise_grows_with_signal():
    rng = np.random.default_rng(0)
    dark = poisson_gaussian_noise(np.full((100, 100), 0.05, np.float32), 0.02, 0.01, rng)
    bright = poisson_gaussian_noise(np.full((100, 100), 0.8, np.float32), 0.02, 0.01, rng)
    assert np.std(bright) > 2 * np.std(dark)


def test_jpeg_noise_changes_but_keeps_shape():
    clean = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    out = jpeg_noise(clean, 20)
    assert out.shape == clean.shape and 0 < np.abs(out - clean).mean() < 0.3


@pytest.mark.parametrize("kind", ["gaussian", "poisson-gaussian", "jpeg"])
def test_add_noise_is_seeded(kind):
    clean = np.random.default_rng(1).random((16, 16, 3)).astype(np.float32)
    config = NoiseConfig(kinds=(kind,))
    a = add_noise(clean, np.random.default_rng(5), config)
    b = add_noise(clean, np.random.default_rng(5), config)
    assert np.array_equal(a, b)


def test_kernels_are_normalised_centred_and_curved_when_asked():
    rng = np.random.default_rng(0)
    for _ in range(5):
        k = motion_blur_kernel(rng)
        ys, xs = np.indices(k.shape)
        assert k.sum() == pytest.approx(1.0, abs=1e-5) and (k >= 0).all()
        assert (k * ys).sum() == pytest.approx(k.shape[0] // 2, abs=0.5)
        assert (k * xs).sum() == pytest.approx(k.shape[1] // 2, abs=0.5)
    straight = trajectory(20, 0.0, np.random.default_rng(1))
    curved = trajectory(20, 1.0, np.random.default_rng(1))
    def bend(p):  # distance of the path from its end-to-end chord
        chord = p[-1] - p[0]
        normal = np.array([-chord[1], chord[0]]) / np.linalg.norm(chord)
        return np.abs((p - p[0]) @ normal).max()
    assert bend(straight) < 0.5 < bend(curved)


def test_blur_with_a_delta_kernel_is_identity():
    clean = np.random.default_rng(0).random((20, 20, 3)).astype(np.float32)
    delta = np.zeros((5, 5), np.float32)
    delta[2, 2] = 1
    assert np.allclose(blur_image(clean, delta, 0.0, np.random.default_rng(0)), clean, atol=1e-6)
    blurred = add_motion_blur(clean, np.random.default_rng(0))
    assert blurred.shape == clean.shape and np.std(blurred) < np.std(clean)


def test_haze_follows_the_scattering_model():
    clean = np.random.default_rng(0).random((30, 40, 3)).astype(np.float32)
    depth = np.linspace(0, 1, 40, dtype=np.float32)[None, :].repeat(30, 0)
    hazy = render_haze(clean, depth, beta=1.5, airlight=0.9)
    t = np.exp(-1.5 * depth)[..., None]
    assert np.allclose(hazy, clean * t + 0.9 * (1 - t), atol=1e-6)
    assert np.allclose(render_haze(clean, np.zeros_like(depth), 2.0, 0.9), clean)  # depth 0: no haze


def test_random_haze_lowers_contrast_and_depth_is_in_range():
    clean = np.random.default_rng(0).random((48, 64, 3)).astype(np.float32)
    d = depth_proxy(clean, np.random.default_rng(1))
    assert d.shape == (48, 64) and d.min() == pytest.approx(0) and d.max() == pytest.approx(1)
    hazy = add_haze(clean, np.random.default_rng(2))
    assert np.std(hazy) < np.std(clean)


def test_calibrated_noise_level_follows_the_table():
    """Piecewise linear between pairs, the first pair's level below it, proportional
    beyond the last pair; the table's order does not matter."""
    import torch

    from restore_core.degradations.noise_level import calibrated_noise_level

    table = [(10.0, 11.0), (1.0, 0.0), (5.0, 5.0)]
    residual = torch.tensor([0.5, 1.0, 3.0, 5.0, 7.5, 10.0, 20.0])
    expected = torch.tensor([0.0, 0.0, 2.5, 5.0, 8.0, 11.0, 22.0])
    assert torch.allclose(calibrated_noise_level(residual, table), expected)
    assert torch.allclose(calibrated_noise_level(torch.tensor([4.0]), [(2.0, 3.0)]), torch.tensor([6.0]))
    with pytest.raises(ValueError, match="empty"):
        calibrated_noise_level(residual, [])


def test_residual_noise_level_of_a_perfect_denoiser_is_the_true_level():
    """What an ideal denoiser removes is the noise itself: with an identity table the
    second look reads exactly the measured level of the (noisy, clean) pair."""
    import torch
    from skimage import data

    from restore_core.degradations.noise_level import residual_noise_level

    photo = data.astronaut().astype(np.float32)[:128, :128] / 255.0
    noisy = gaussian_noise(photo, 20, np.random.default_rng(0))
    as_batch = lambda a: torch.from_numpy(a.transpose(2, 0, 1)[None].copy())  # noqa: E731
    level = residual_noise_level(as_batch(noisy), as_batch(photo), [(0.0, 0.0), (100.0, 100.0)])
    assert torch.allclose(level, measured_noise_level(as_batch(noisy), as_batch(photo)))
    assert level.item() == pytest.approx(20, rel=0.05)


def test_camera_noise_is_correlated_strongest_in_the_shadows_and_seeded():
    """The camera pipeline's noise, unlike white noise: correlated between neighbours
    (demosaicing), stronger in the shadows than in the light (the tone curve), the same
    for the same seed; without noise only demosaicing's error remains; JPEG gives 8-bit
    values; grey images keep their shape; odd sizes are refused (the mosaic's 2 x 2)."""
    from skimage import data

    from restore_core.degradations.noise import camera_noise
    from restore_core.metrics import psnr

    dark, light = np.full((128, 128, 3), 0.05, np.float32), np.full((128, 128, 3), 0.8, np.float32)
    in_dark = camera_noise(dark, 0.003, 0.002, np.random.default_rng(0)) - dark
    in_light = camera_noise(light, 0.003, 0.002, np.random.default_rng(0)) - light

    def neighbour_correlation(noise: np.ndarray) -> float:
        return float(np.corrcoef(noise[:, :-1, 1].ravel(), noise[:, 1:, 1].ravel())[0, 1])

    assert in_dark.std() > 1.3 * in_light.std()  # measured 7.2 against 5.1 levels
    assert neighbour_correlation(in_light) > 0.25  # measured 0.36
    assert abs(neighbour_correlation(gaussian_noise(light, 10, np.random.default_rng(0)) - light)) < 0.05
    photo = data.astronaut()[:256, :256].astype(np.float32) / 255
    again = camera_noise(photo, 0.003, 0.002, np.random.default_rng(5), 80, (1, 2, 0, 1), edge_aware=False)
    np.testing.assert_array_equal(again, camera_noise(photo, 0.003, 0.002, np.random.default_rng(5), 80, (1, 2, 0, 1), edge_aware=False))
    assert np.abs(again * 255 - np.round(again * 255)).max() < 1e-4  # through JPEG
    assert psnr(camera_noise(photo, 0.0, 0.0, np.random.default_rng(0)) * 255, photo * 255) > 30  # demosaicing alone: 30.8 dB
    assert camera_noise(np.full((32, 32), 0.3, np.float32), 0.003, 0.002, np.random.default_rng(0)).shape == (32, 32)
    # odd sides (make-pairs on a 255-row photo ended in a traceback): the mosaic's last row or
    # column repeated and cut off again
    odd = camera_noise(photo[:255, :251], 0.003, 0.002, np.random.default_rng(0))
    assert odd.shape == (255, 251, 3) and 20 < psnr(odd * 255, photo[:255, :251] * 255) < 45
    drawn = add_noise(photo, np.random.default_rng(1), NoiseConfig(kinds=("camera",)))
    assert drawn.shape == photo.shape and drawn.dtype == np.float32 and 20 < psnr(drawn * 255, photo * 255) < 45


def test_the_first_looks_tell_a_cameras_demosaiced_noise_from_white_noise_and_texture():
    """A camera's noise, demosaiced, is correlated between neighbours: its colour reads
    far higher at half resolution than at full, and the level told is raised to twice
    the image's half-resolution look. White noise and clean photographs (texture is
    mostly brightness) keep their level exactly; so do grey images (no colour) and
    images too small to look at."""
    import torch
    from skimage import data

    from restore_core.degradations.noise import camera_noise
    from restore_core.degradations.noise_level import TOLD_PER_CORRELATED_STD, correlated_noise_weight, first_looks, level_for_correlated_noise

    as_batch = lambda a: torch.from_numpy(a.transpose(2, 0, 1)[None].copy())  # noqa: E731
    for photo in (data.astronaut()[:256, :256], data.chelsea()[:256, :256]):
        photo = photo.astype(np.float32) / 255
        for sigma in (0, 5, 15):
            looks = first_looks(as_batch(gaussian_noise(photo, sigma, np.random.default_rng(0)) if sigma else photo))
            if sigma:
                assert looks.chroma_coarse.item() < 1.2 * looks.chroma_fine.item()  # measured 1.04-1.14 x
            else:
                assert looks.chroma_coarse.item() < 1.5  # a photograph's colour has little texture: 0.7, 1.15
            assert correlated_noise_weight(looks).item() == 0
            assert torch.equal(level_for_correlated_noise(looks.fine, looks), looks.fine)
        for shot, read in ((0.002, 0.002), (0.006, 0.005)):
            camera = camera_noise(photo, shot, read, np.random.default_rng(0))
            looks = first_looks(as_batch(camera))
            assert looks.chroma_coarse.item() > 2.2 * looks.chroma_fine.item()  # measured 2.4-2.8 x
            assert correlated_noise_weight(looks).item() == 1
            told = level_for_correlated_noise(looks.fine, looks)
            assert told.item() == pytest.approx(TOLD_PER_CORRELATED_STD * looks.coarse.item())
            assert told.item() > 3 * looks.fine.item()  # measured 6.2-6.6 x
        # White noise saved as a JPEG with 4:2:0 chroma: its colour's fine detail is gone
        # (so the colour looks read "correlated"), its brightness's is not.
        noisy = np.round(gaussian_noise(photo, 25, np.random.default_rng(0))[..., ::-1] * 255).astype(np.uint8)
        jpeg = cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
        looks = first_looks(as_batch(jpeg[..., ::-1].astype(np.float32) / 255))
        assert looks.chroma_coarse.item() > 3 * looks.chroma_fine.item() and looks.coarse.item() < 1.3 * looks.fine.item()
        assert correlated_noise_weight(looks).item() == 0
    grey = camera_noise(photo, 0.006, 0.005, np.random.default_rng(0)).mean(axis=2, keepdims=True)
    looks = first_looks(as_batch(np.repeat(grey, 3, axis=2)))
    assert correlated_noise_weight(looks).item() == 0 and correlated_noise_weight(first_looks(as_batch(grey))).item() == 0
    tiny = first_looks(torch.rand(1, 3, 3, 3))
    assert torch.isnan(tiny.coarse).all() and correlated_noise_weight(tiny).item() == 0
    assert torch.equal(level_for_correlated_noise(tiny.fine, tiny), tiny.fine)


def test_a_sensors_noise_is_read_off_its_mosaic():
    """Foi's Poisson-Gaussian model (variance = gain * x + floor) fitted on RGGB mosaics of
    three photographs with known noise: the standard deviation it predicts at dark, mid
    and bright samples is within 25 % of the truth (measured: 0.83-1.2x, texture reading
    as noise when there is little noise); too small a mosaic is None; a draw has the
    model's variance."""
    from skimage import data

    from restore_core.degradations.noise import srgb_to_linear
    from restore_core.degradations.sensor_noise import SensorNoise, draw_sensor_noise, estimate_sensor_noise

    for photo in (data.astronaut(), data.coffee(), data.chelsea()):
        linear = np.asarray(srgb_to_linear(photo.astype(np.float64) / 255))
        mosaic = np.empty(linear.shape[:2])
        for (dy, dx), channel in zip(((0, 0), (0, 1), (1, 0), (1, 1)), (0, 1, 1, 2)):
            mosaic[dy::2, dx::2] = linear[dy::2, dx::2, channel]
        for truth in (SensorNoise(0.006, 2.5e-5), SensorNoise(0.0, 4e-4), SensorNoise(0.002, 4e-6)):
            noisy = mosaic + np.random.default_rng(0).normal(0.0, 1.0, mosaic.shape) * truth.std(mosaic)
            found = estimate_sensor_noise(noisy)
            levels = np.array([0.05, 0.2, 0.5])
            ratio = found.std(levels) / truth.std(levels)
            assert np.all((ratio > 0.75) & (ratio < 1.3)), (photo.shape, truth, found, ratio)
    assert estimate_sensor_noise(np.zeros((16, 16))) is None
    draw = draw_sensor_noise(np.full((512, 512), 0.3, np.float32), SensorNoise(0.006, 2.5e-5), seed=1)
    assert draw.dtype == np.float32 and abs(draw.var() / (0.006 * 0.3 + 2.5e-5) - 1) < 0.03
    assert np.array_equal(draw, draw_sensor_noise(np.full((512, 512), 0.3, np.float32), SensorNoise(0.006, 2.5e-5), seed=1))


def test_a_noise_level_on_the_0_1_scale_is_cautioned():
    """--set sigma=0.1 (0.1 of the 0-1 scale, meant as 25.5) made pairs and trained models
    on a tenth of one 8-bit step of noise without a word."""
    from restore_core.degradations.noise import scale_caution
    from restore_core.degradations.table import MixedConfig, config_cautions

    assert scale_caution(NoiseConfig(sigma=(0.1, 0.1))) == (
        "noise sigma 0.1 is on the 0-255 scale of 8-bit samples, where it is a fraction of one step (next to no noise); "
        "0.1 on the 0-1 scale is sigma=25.5")
    assert "0.02-0.2 on the 0-1 scale is sigma=[5.1, 51]" in scale_caution(NoiseConfig(sigma=(0.02, 0.2)))
    for fine in (NoiseConfig(), NoiseConfig(sigma=(0.0, 0.0)), NoiseConfig(sigma=(0.5, 2.0)), NoiseConfig(kinds=("poisson-gaussian",), sigma=(0.1, 0.1))):
        assert scale_caution(fine) is None, fine
    assert len(config_cautions(MixedConfig(settings={"noise": {"sigma": 0.1}}))) == 1
    assert config_cautions(MixedConfig(degradations=("rain", "haze"))) == [] and config_cautions(MixedConfig()) == []
