"""Benchmark dataset adapters on tiny fixture trees that mimic each public layout,
and the input rows of ../shared/data reproduced against scikit-image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import shared_dataset
from restore_core.datasets import DatasetError, add_gaussian_noise, load_dataset
from restore_core.evaluation import Protocol, evaluate_samples


def _img(path: Path, value: int, size=(8, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))


def test_gopro_scene_layout(tmp_path):
    for scene in ("GOPR0384_11_00", "GOPR0385_11_01"):
        for i in (1, 2):
            _img(tmp_path / "test" / scene / "blur" / f"{i:06d}.png", 10)
            _img(tmp_path / "test" / scene / "sharp" / f"{i:06d}.png", 20)
    data = load_dataset("gopro", tmp_path)
    assert len(data.samples) == 4 and data.samples[0].name == "GOPR0384_11_00/000001.png"


def test_gopro_flattened_layout(tmp_path):
    _img(tmp_path / "input" / "a.png", 10)
    _img(tmp_path / "target" / "a.png", 20)
    assert len(load_dataset("gopro", tmp_path).samples) == 1


@pytest.mark.parametrize("inp, tgt, in_name, tgt_name", [
    ("input", "target", "1.png", "1.png"),
    ("rainy", "norain", "rain-001.png", "norain-001.png"),
    ("rain", "norain", "rain-12.png", "norain-12.png"),
])
def test_rain_layouts(tmp_path, inp, tgt, in_name, tgt_name):
    _img(tmp_path / inp / in_name, 10)
    _img(tmp_path / tgt / tgt_name, 20)
    data = load_dataset("rain100h", tmp_path)
    assert len(data.samples) == 1 and data.task == "derain"


def test_prenet_layout_pairs_rain_and_norain_side_by_side(tmp_path):
    """PReNet's Rain100H/Rain100L (rain-001.png beside norain-001.png in one folder) and
    RainTrainH (rain-N.png beside norain-N.png, some inputs missing) pair by number."""
    for i in (1, 2, 10):
        _img(tmp_path / "Rain100H" / f"rain-{i:03d}.png", i)
        _img(tmp_path / "Rain100H" / f"norain-{i:03d}.png", 100 + i)
    _img(tmp_path / "Rain100H" / "norain-004.png", 104)  # a reference without its input
    data = load_dataset("rain100h", tmp_path / "Rain100H")
    assert [s.name for s in data.samples] == ["rain-001.png", "rain-002.png", "rain-010.png"]
    for sample in data.samples:
        assert round(sample.load_target()[0, 0, 0] * 255) == 100 + round(sample.load_degraded().rgb[0, 0, 0] * 255)
    from restore_core.io.folders import list_training_pairs

    assert len(list_training_pairs(tmp_path / "Rain100H")) == 3  # restore train --data reads it too


def test_images_in_no_pair_are_listed_as_left_out(tmp_path):
    """An input whose reference is missing (or the other way round) is not scored; the
    dataset lists it, so the benchmark can say so instead of scoring fewer images quietly."""
    for name in ("1.png", "2.png", "3.png"):
        _img(tmp_path / "input" / name, 10)
    for name in ("1.png", "3.png", "4.png"):
        _img(tmp_path / "target" / name, 20)
    data = load_dataset("paired", tmp_path)
    assert [s.name for s in data.samples] == ["1.png", "3.png"]
    assert [p.relative_to(tmp_path).as_posix() for p in data.unpaired] == ["input/2.png", "target/4.png"]
    for scene in ("a", "b"):
        _img(tmp_path / "gopro" / "test" / scene / "blur" / "1.png", 10)
        _img(tmp_path / "gopro" / "test" / scene / "sharp" / "1.png", 20)
    _img(tmp_path / "gopro" / "test" / "b" / "blur" / "2.png", 10)
    assert [p.relative_to(tmp_path / "gopro").as_posix() for p in load_dataset("gopro", tmp_path / "gopro").unpaired] == ["test/b/blur/2.png"]


def test_jorder_scale_tag_does_not_pair_every_input_with_one_reference(tmp_path):
    """JORDER's Rain100L names inputs norain-1x2.png against norain-1.png: the x2 is a
    scale tag, not the image's number."""
    from restore_core.io.folders import list_pairs

    for i in (1, 2, 3):
        _img(tmp_path / "rain" / f"norain-{i}x2.png", i)
        _img(tmp_path / "norain" / f"norain-{i}.png", 100 + i)
    pairs = list_pairs(tmp_path)
    assert [(a.name, b.name) for a, b in pairs] == [(f"norain-{i}x2.png", f"norain-{i}.png") for i in (1, 2, 3)]


def test_jorder_release_layout_with_inputs_in_a_scale_subfolder(tmp_path):
    """JORDER's releases keep the inputs one level down: rain/X2/norain-1x2.png against
    norain/norain-1.png. Benchmark and training both find them."""
    from restore_core.io.folders import list_training_pairs

    for i in (1, 2, 10):
        _img(tmp_path / "rain_data_test_Light" / "rain" / "X2" / f"norain-{i}x2.png", i)
        _img(tmp_path / "rain_data_test_Light" / "norain" / f"norain-{i}.png", 100 + i)
    data = load_dataset("rain100l", tmp_path / "rain_data_test_Light")
    assert [s.name for s in data.samples] == ["norain-1x2.png", "norain-2x2.png", "norain-10x2.png"]
    for sample in data.samples:
        assert round(sample.load_target()[0, 0, 0] * 255) == 100 + round(sample.load_degraded().rgb[0, 0, 0] * 255)
    assert len(list_training_pairs(tmp_path / "rain_data_test_Light")) == 3


def test_two_scale_subfolders_are_refused_by_name(tmp_path):
    for scale in ("X2", "X4"):
        _img(tmp_path / "rain" / scale / f"norain-1{scale.lower()}.png", 1)
    _img(tmp_path / "norain" / "norain-1.png", 2)
    with pytest.raises(DatasetError, match=r"several scale sub-folders \(X2, X4\)"):
        load_dataset("paired", tmp_path)


def test_two_inputs_with_one_number_are_refused_not_paired_twice(tmp_path):
    _img(tmp_path / "input" / "a_7.png", 1)
    _img(tmp_path / "input" / "b_7.png", 2)
    _img(tmp_path / "target" / "7.png", 3)
    with pytest.raises(DatasetError, match=r"a_7.png and b_7.png would both pair with .*7.png"):
        load_dataset("paired", tmp_path)


def test_hide_layout(tmp_path):
    _img(tmp_path / "GT" / "x.png", 20)
    _img(tmp_path / "GT" / "y.png", 20)
    _img(tmp_path / "test" / "test-close-ups" / "x.png", 10)
    _img(tmp_path / "test" / "test-long-shot" / "y.png", 10)
    assert [s.name for s in load_dataset("hide", tmp_path).samples] == ["test-close-ups/x.png", "test-long-shot/y.png"]


def test_realblur_list_and_scan(tmp_path):
    scene = tmp_path / "RealBlur-J_ECC_IMCORR_centroid_itensity_ref" / "scene230"
    _img(scene / "blur" / "blur_1.png", 10)
    _img(scene / "gt" / "gt_1.png", 20)
    assert len(load_dataset("realblur-j", tmp_path).samples) == 1  # found by scanning
    (tmp_path / "RealBlur_J_test_list.txt").write_text(
        f"{(scene / 'gt' / 'gt_1.png').relative_to(tmp_path)} {(scene / 'blur' / 'blur_1.png').relative_to(tmp_path)}\n"
    )
    assert len(load_dataset("realblur-j", tmp_path).samples) == 1


def test_sots_many_hazy_per_clear_and_indoor_crop(tmp_path):
    for k in (1, 2):
        _img(tmp_path / "hazy" / f"1400_{k}.png", 200, size=(460, 620))
    _img(tmp_path / "clear" / "1400.png", 100, size=(480, 640))
    data = load_dataset("sots-indoor", tmp_path)
    assert len(data.samples) == 2 and data.samples[0].target_crop == (10, 470, 10, 630)
    summary = evaluate_samples(data.samples, None, "input")
    assert summary.count == 2  # shapes agree after the crop


def test_a_pair_of_two_sizes_names_the_input_or_the_output_and_a_border(tmp_path):
    """The size check said "output is" on the input row, where no model had run."""
    _img(tmp_path / "input" / "short.png", 10, size=(6, 12))
    _img(tmp_path / "target" / "short.png", 20)
    _img(tmp_path / "input" / "framed.png", 10, size=(4, 8))
    _img(tmp_path / "target" / "framed.png", 20)
    samples = {s.name: s for s in load_dataset("paired", tmp_path).samples}
    with pytest.raises(ValueError, match=r"^short.png: the input is 12x6 but its reference is 12x8$"):
        evaluate_samples([samples["short.png"]], None, "input")
    with pytest.raises(ValueError, match=r"^framed.png: the input is 8x4 but its reference is 12x8 \(the reference has a 2-pixel border"):
        evaluate_samples([samples["framed.png"]], None, "input")
    with pytest.raises(ValueError, match=r"^framed.png: the output is 12x8 but its reference is 8x4$"):
        evaluate_samples([samples["framed.png"]], lambda image: np.zeros((8, 12, 3), np.float32), "model",
                         Protocol(target_crop=(2, 6, 2, 10)))


def test_sidd_mat_blocks(tmp_path):
    from scipy.io import savemat

    noisy = np.random.default_rng(0).integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    savemat(tmp_path / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": noisy})
    savemat(tmp_path / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": noisy})
    data = load_dataset("sidd", tmp_path)
    assert len(data.samples) == 6
    assert evaluate_samples(data.samples, None, "input").psnr_rgb == float("inf")


def test_clean_set_with_noise_is_deterministic(tmp_path):
    _img(tmp_path / "a.png", 128)
    first = load_dataset("kodak24", tmp_path, sigma=15).samples[0].load_degraded().rgb
    second = load_dataset("kodak24", tmp_path, sigma=15).samples[0].load_degraded().rgb
    assert np.array_equal(first, second) and 0.02 < np.std(first) < 0.1


def test_a_named_clean_set_of_the_other_kind_of_images_is_said(tmp_path, rng):
    """`--dataset bsd68 --root CBSD68/` scored colour images under a grey set's name (and
    `cbsd68` over grey ones the reverse), without a word."""
    colour, grey = tmp_path / "colour", tmp_path / "grey"
    colour.mkdir()
    grey.mkdir()
    cv2.imwrite(str(colour / "a.png"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    cv2.imwrite(str(grey / "a.png"), rng.integers(0, 256, (16, 16), dtype=np.uint8))
    cv2.imwrite(str(grey / "b.png"), np.repeat(rng.integers(0, 256, (16, 16, 1), dtype=np.uint8), 3, axis=2))  # grey saved as RGB
    assert load_dataset("bsd68", colour).caution == ("bsd68 names a grey set, but a.png is in colour: the images are noised and scored "
                                                     "in colour, as a colour set (cbsd68, kodak24, mcmaster) is")
    assert load_dataset("cbsd68", grey).caution.startswith("cbsd68 names a colour set, but a.png is grey")
    assert load_dataset("bsd68", grey).caution == load_dataset("cbsd68", colour).caution == ""
    (grey / "a.png").unlink()  # three equal channels are grey too
    assert load_dataset("set12", grey).caution == "" and load_dataset("kodak24", grey).caution.startswith("kodak24 names a colour set")


def test_float_noise_is_the_same_noise_neither_rounded_nor_clipped(tmp_path):
    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    colour[:4] = 255  # saturated rows: the float protocol goes above 1 there
    cv2.imwrite(str(tmp_path / "a.png"), colour)
    cv2.imwrite(str(tmp_path / "b.png"), colour[..., 1])  # grey
    eight_bit = load_dataset("cbsd68", tmp_path, sigma=25)
    floating = load_dataset("cbsd68", tmp_path, sigma=25, float_noise=True)
    assert floating.name == "cbsd68-sigma25-float"
    for a, b in zip(eight_bit.samples, floating.samples):
        rounded, kept = a.load_degraded(), b.load_degraded()
        assert kept.layout == rounded.layout and kept.rgb.dtype == np.float32
        assert kept.rgb.max() > 1.0 and kept.rgb.min() < 1.0
        # rounding and clipping the float image gives the 8-bit protocol's image (seeded: exact here)
        as_8_bit = np.clip(np.round(kept.rgb.astype(np.float64) * 255), 0, 255)
        assert np.array_equal(as_8_bit, np.round(rounded.rgb.astype(np.float64) * 255))
    with pytest.raises(DatasetError, match="clean-only"):
        load_dataset("rain100h", tmp_path, float_noise=True)


def test_restorer_reads_a_float_protocol_image_as_its_clipped_version(tiny_checkpoint):
    import torch

    from restore_core.checkpoint import load_checkpoint
    from restore_core.engine.runner import Restorer

    restorer = Restorer(load_checkpoint(tiny_checkpoint), torch.device("cpu"), "fp32")
    noisy = np.random.default_rng(4).normal(0.5, 0.4, (24, 40, 3)).astype(np.float32)  # ~21 % out of [0, 1]
    before = noisy.copy()
    out = restorer.restore_array(noisy)
    assert np.array_equal(out, restorer.restore_array(np.clip(noisy, 0, 1)))
    assert np.array_equal(noisy, before)  # the caller's array is not clipped in place


@pytest.mark.parametrize("degraded", ["lq", "input", "hazy", "noisy"])
def test_a_gt_folder_is_the_reference_of_the_degraded_folder_beside_it(tmp_path, degraded):
    """BasicSR's lq/ + gt/, RESIDE's hazy/ + gt/, many papers' input/ + gt/: paired as
    input/ + target/ is (they were "not a paired folder"), for benchmark and training alike."""
    from restore_core.io.folders import list_training_pairs

    for name, value in (("1.png", 10), ("2.png", 20)):
        _img(tmp_path / degraded / name, value)
        _img(tmp_path / "gt" / name, value + 5)
    data = load_dataset("paired", tmp_path)
    assert [s.name for s in data.samples] == ["1.png", "2.png"]
    assert [(round(s.load_degraded().rgb.mean() * 255), round(s.load_target().mean() * 255)) for s in data.samples] == [(10, 15), (20, 25)]
    assert [(a.name, b.parent.name) for a, b in list_training_pairs(tmp_path)] == [("1.png", "gt"), ("2.png", "gt")]


def test_mismatched_layout_names_what_was_expected(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match=r"expected test/<scene>/blur/ .*found 0 pair"):
        load_dataset("gopro", tmp_path)
    with pytest.raises(DatasetError, match="input/ \\+ target/, .*, input/, lq/, rainy/, rain/, hazy/, blur/ or noisy/ \\+ gt/, or rain-N"):
        load_dataset("paired", tmp_path)
    with pytest.raises(DatasetError, match=r"rain-N \+ norain-N side by side \(optionally under test/\)"):
        load_dataset("rain100h", tmp_path)
    _img(tmp_path / "inputs_only" / "blur" / "1.png", 10)  # test samples without ground truth (GoPro_DMPHN_blur20)
    with pytest.raises(DatasetError, match=r"1.png: is a file, not a folder$"):  # it said "no such folder"
        load_dataset("paired", tmp_path / "inputs_only" / "blur" / "1.png")
    with pytest.raises(DatasetError, match=r"nope: no such folder$"):
        load_dataset("paired", tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"inputs_only: holds blur/ but no sharp/ beside it: a benchmark or a training pair needs both"):
        load_dataset("paired", tmp_path / "inputs_only")
    # clean images alone: said, with the ways to score them
    _img(tmp_path / "clean" / "1.png", 10)
    with pytest.raises(DatasetError, match=r"clean: holds 1 image\(s\) with no references beside them: not a paired folder .*; clean images are "
                                           r"scored under synthetic noise as --dataset cbsd68 \(colour\) or bsd68 \(grey\) with --sigma, or made into pairs by restore make-pairs$"):
        load_dataset("paired", tmp_path / "clean")
    # one half of a pair named as the root: its parent is the folder to give (it was "not a paired folder")
    _img(tmp_path / "set" / "input" / "1.png", 10)
    _img(tmp_path / "set" / "target" / "1.png", 12)
    for half in ("input", "target"):
        with pytest.raises(DatasetError, match=rf"{half}: the {half}/ half of a paired folder; give the folder that holds input/ and target/: {tmp_path / 'set'}$"):
            load_dataset("paired", tmp_path / "set" / half)


@pytest.mark.parametrize("noisy_set, clean_set", [("McMaster_sigma25", "McMaster"), ("BSD68_sigma25", "BSD68")])
def test_noise_protocol_reproduces_shared_files_bit_exactly(noisy_set, clean_set):
    noisy_dir = shared_dataset(noisy_set) / "input"
    clean_files = sorted(p for p in shared_dataset(clean_set).iterdir() if p.suffix == ".png")
    for index, clean_path in enumerate(clean_files[:5]):
        as_read = cv2.imread(str(clean_path), cv2.IMREAD_UNCHANGED).astype(np.float64)
        expected = cv2.imread(str(noisy_dir / clean_path.name), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(add_gaussian_noise(as_read, 25, index), expected), clean_path.name


def _independent_scores(samples) -> tuple[float, float, float, float]:
    """The same protocol written directly against scikit-image."""
    py, sy, pr, sr = [], [], [], []
    for s in samples:
        a = np.round(s.load_degraded().rgb * 255).astype(np.uint8)
        b = s.load_target()
        if s.target_crop:
            t, bo, l, r = s.target_crop
            b = b[t:bo, l:r]
        b = np.round(b * 255).astype(np.uint8)
        ya, yb = rgb2ycbcr(a)[..., 0], rgb2ycbcr(b)[..., 0]
        py.append(peak_signal_noise_ratio(yb, ya, data_range=255))
        sy.append(structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255))
        pr.append(peak_signal_noise_ratio(b, a, data_range=255))
        sr.append(structural_similarity(a.astype(np.float64), b.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=255, channel_axis=2))
    return float(np.mean(py)), float(np.mean(sy)), float(np.mean(pr)), float(np.mean(sr))


PAIRED_SETS = [("Rain100H_dev50", "rain100h"), ("SemiIRR_val20", "paired"), ("McMaster_sigma25", "paired"),
               ("McMaster_motion", "paired"), ("BSD68_sigma25", "paired"), ("SOTS_indoor_mini4", "sots-indoor")]


@pytest.mark.parametrize("folder, adapter", PAIRED_SETS)
def test_benchmark_input_row_matches_scikit_image(folder, adapter):
    data = load_dataset(adapter, shared_dataset(folder))
    ours = evaluate_samples(data.samples, None, "input", Protocol())
    py, sy, pr, sr = _independent_scores(data.samples)
    if data.samples[0].load_degraded().layout == "grey":  # grey sets are scored on their one channel
        py, sy = pr, sr
    assert ours.psnr_y == pytest.approx(py, abs=0.01)
    assert ours.ssim_y == pytest.approx(sy, abs=0.001)
    assert ours.psnr_rgb == pytest.approx(pr, abs=0.01)
    assert ours.ssim_rgb == pytest.approx(sr, abs=0.001)


@pytest.mark.parametrize("task", ["derain", "denoise", "deblur", "dehaze"])
def test_embedded_dataset_per_task_is_deterministic(task):
    from restore_core.datasets import embedded_dataset

    first, second = embedded_dataset(task), embedded_dataset(task)
    assert len(first.samples) >= 3 and first.task == task
    a, b = first.samples[0].load_degraded().rgb, second.samples[0].load_degraded().rgb
    assert np.array_equal(a, b)
    summary = evaluate_samples(first.samples, None, "input")
    assert 8 < summary.psnr_rgb < 35  # degraded, but not destroyed


def test_each_sample_carries_the_degradation_its_set_declares(tmp_path):
    """A set's own task (a named dataset, a make-pairs record, degradation-named folders)
    labels every sample with its degradation, which benchmark scores an all-in-one
    model's classifier against; input/ + target/ say nothing."""
    for side, value in (("hazy", 10), ("clear", 20)):
        for name in ("a.png", "b.png"):
            _img(tmp_path / "hazy-set" / side / name, value)
    assert load_dataset("paired", tmp_path / "hazy-set").labels == {"a.png": "haze", "b.png": "haze"}
    for side, value in (("input", 10), ("target", 20)):
        _img(tmp_path / "plain" / side / "a.png", value)
    assert load_dataset("paired", tmp_path / "plain").labels == {}
    assert load_dataset("rain100h", tmp_path / "plain").labels == {"a.png": "rain"}


def test_an_output_is_found_by_its_name_or_its_stem_even_with_glob_characters(tmp_path):
    from restore_core.evaluation import find_output

    (tmp_path / "scene").mkdir()
    for name in ("a[1].jpg", "b.png", "b.tif", "scene/c.webp"):
        (tmp_path / name).write_bytes(b"")
    assert find_output(tmp_path, "a[1].png") == tmp_path / "a[1].jpg"  # the stem was read as a glob pattern
    assert find_output(tmp_path, "b.png") == tmp_path / "b.png"
    assert find_output(tmp_path, "scene/c.png") == tmp_path / "scene" / "c.webp"
    assert find_output(tmp_path, "d.png") is None
    with pytest.raises(ValueError, match=r"b.png, b.tif could each be the output for b.jpg; keep one"):
        find_output(tmp_path, "b.jpg")
