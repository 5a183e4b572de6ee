"""Camera raw files: developed by LibRaw (rawpy) on read, restored, written as TIFF.

The raw files are DNGs made here from a photograph (scikit-image's astronaut): its sRGB
pixels taken back to linear light, sampled through an RGGB colour filter, written with
a colour matrix that makes the camera's primaries sRGB's, so that the development
should give the photograph back but for demosaicing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from restore_core.degradations.noise import srgb_to_linear as linear
from restore_core.metrics import psnr

ROOT = Path(__file__).resolve().parent.parent
BLACK, WHITE = 512, 16383
# XYZ (D65) -> linear sRGB, as DNG's ColorMatrix1 (XYZ -> camera): the camera sees sRGB's primaries.
_XYZ_TO_SRGB = (3.2404542, -1.5371385, -0.4985314, -0.9692660, 1.8760108, 0.0415560, 0.0556434, -0.2040259, 1.0572252)


def restore(*args: str, block_rawpy: bool = False) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; ``block_rawpy`` runs it as an install without rawpy."""
    prelude = "import sys; sys.modules['rawpy'] = None; " if block_rawpy else ""
    return subprocess.run(
        [sys.executable, "-c", prelude + "from cli.main import app; app()", *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def scene(size: int = 192) -> np.ndarray:
    """The photograph the raw files are made from: float64 sRGB in [0, 1]."""
    from skimage import data

    return data.astronaut()[16:16 + size, 160:160 + size].astype(np.float64) / 255


def write_dng(path: Path, linear_rgb: np.ndarray, noise: float = 0.0, seed: int = 0, shot: float = 0.0,
              neutral: tuple[float, float, float] = (1.0, 1.0, 1.0), more_tags: tuple = ()) -> Path:
    """An RGGB mosaic of ``linear_rgb`` as a 14-bit DNG with a make, a model and a date.
    Its noise is Poisson-Gaussian in units of the white level: variance ``shot * x +
    noise**2``. ``neutral``: the camera's response to white (DNG's AsShotNeutral), so
    that development multiplies red and blue by ``1 / neutral``, as a real camera's white
    balance does (their noise too)."""
    import tifffile

    seen = linear_rgb * np.asarray(neutral)
    mosaic = np.empty(linear_rgb.shape[:2])
    mosaic[0::2, 0::2] = seen[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = seen[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = seen[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = seen[1::2, 1::2, 2]
    mosaic += np.random.default_rng(seed).normal(0.0, 1.0, mosaic.shape) * np.sqrt(shot * np.clip(mosaic, 0, None) + noise**2)
    samples = np.clip(np.round(BLACK + mosaic * (WHITE - BLACK)), 0, WHITE).astype(np.uint16)
    rational = [part for value in _XYZ_TO_SRGB for part in (round(value * 10000), 10000)]
    as_shot = [part for value in neutral for part in (round(value * 10000), 10000)]
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50708, "s", 0, "restore test camera", True),  # UniqueCameraModel
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50714, "H", 1, (BLACK,), True),
        (50717, "H", 1, (WHITE,), True),
        (50721, "2i", 9, rational, True),  # ColorMatrix1
        (50778, "H", 1, (21,), True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, as_shot, True),  # AsShotNeutral
        (271, "s", 0, "Restore", True),
        (272, "s", 0, "Test Camera", True),
        *more_tags,
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, samples, photometric=32803, extratags=tags, datetime="2026:12:05 10:00:00", metadata=None)
    return path


def read_rgb16(path: Path) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert pixels is not None and pixels.dtype == np.uint16 and pixels.shape[2] == 3, path
    return pixels[..., ::-1].astype(np.float64) / 65535


def test_a_noisy_raw_photo_comes_out_a_16_bit_tiff_denoised_at_its_sensors_level(tmp_path):
    """`restore denoise` on a folder of raw files: developed (16-bit sRGB, upright),
    denoised, written as a 16-bit TIFF that keeps the make, model and date and leaves the
    DNG's own tags behind. The sensor's noise after white balance, demosaicing and the
    tone curve is correlated and strongest in the shadows, and the level estimated from
    the developed image alone reads it far too low (5.1 here); the level measured from
    the raw file's own mosaic (reported as ``noise_sigma_from_raw``, 23.1) restores it
    nearer the photograph than that estimate told, and than the blind path (measured:
    noisy 26.07 dB, measured level 31.13, image's own estimate told 28.41, blind 28.78)."""
    pytest.importorskip("rawpy")
    from restore_core.degradations.noise_level import estimate_noise_level
    from restore_core.io.images import read_image

    photo = scene()
    raw = write_dng(tmp_path / "raws" / "IMG_0001.DNG", linear(photo), noise=0.005, shot=0.006, neutral=(0.5, 1.0, 0.65))
    result = restore("denoise", str(tmp_path / "raws"), str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    [line] = map(json.loads, result.stdout.splitlines())
    assert line["status"] == "ok" and line["output"] == str(tmp_path / "out" / "IMG_0001.tif")
    assert (line["width"], line["height"]) == (192, 192)
    measured = line["degradation"]["noise_sigma_from_raw"]
    assert line["degradation"]["noise_sigma"] == measured and 15 < measured < 35, line

    developed = read_image(raw)  # what the model was given
    assert developed.bit_depth == 16 and developed.layout == "rgb" and developed.source_format == "camera raw"
    assert developed.noise_level is None  # measured only when asked: it costs a second development
    restored = read_rgb16(tmp_path / "out" / "IMG_0001.tif")
    before, after = psnr(developed.rgb * 255.0, photo * 255.0), psnr(restored * 255.0, photo * 255.0)
    assert after > before + 3.0, (before, after)
    own_estimate = float(estimate_noise_level(torch.from_numpy(developed.rgb).permute(2, 0, 1)[None])[0])
    quick = restore("denoise", str(tmp_path / "raws"), str(tmp_path / "quick"), "--sigma", "quick", "--json")
    assert "noise_sigma_from_raw" not in json.loads(quick.stdout)["degradation"]  # quick: from the image alone
    for name, sigma in (("blind", "blind"), ("told", f"{own_estimate:.2f}")):
        other = restore("denoise", str(tmp_path / "raws"), str(tmp_path / name), "--sigma", sigma, "--quiet")
        assert other.returncode == 0, other.stderr
        assert psnr(read_rgb16(tmp_path / name / "IMG_0001.tif") * 255.0, photo * 255.0) < after - 1.0, (name, sigma)
    with Image.open(tmp_path / "out" / "IMG_0001.tif") as written:
        exif = written.getexif()
        assert (exif.get(271), exif.get(272), exif.get(306)) == ("Restore", "Test Camera", "2026:12:05 10:00:00")
        assert 50706 not in exif and 33422 not in exif and written.mode.startswith("RGB")


def test_a_raw_photo_developed_elsewhere_is_told_a_level_for_its_camera_noise(tmp_path, monkeypatch):
    """The photo of the test above, developed and saved as an image (a 16-bit TIFF or
    PNG export: no mosaic left to measure). Its noise is correlated between neighbours,
    which the second look alone read as 6.1; the first looks see that in its colour and
    tell twice the half-resolution look (24.8, near the 23.1 measured from the raw file):
    restored 2.5 dB better than told the second look alone (measured 31.19 against
    28.64 dB; the raw file's own level gave 31.13)."""
    pytest.importorskip("rawpy")
    from restore_core.checkpoint import load_checkpoint
    from restore_core.engine.runner import Restorer
    from restore_core.io.images import read_image
    from restore_core.models import infoflow
    from restore_core.presets import PRESETS, find_weights

    photo = scene()
    raw = write_dng(tmp_path / "IMG_0001.DNG", linear(photo), noise=0.005, shot=0.006, neutral=(0.5, 1.0, 0.65))
    developed = torch.from_numpy(read_image(raw).rgb.astype(np.float32)).permute(2, 0, 1)[None]
    descriptor = load_checkpoint(find_weights(PRESETS["infoflow-denoise"].weights))
    descriptor.model.set_sigma("auto")
    restorer = Restorer(descriptor, torch.device("cpu"), "fp32")
    score = lambda out: psnr(out[0].permute(1, 2, 0).numpy() * 255.0, photo * 255.0)  # noqa: E731
    told = restorer(developed)
    report = restorer.last_degradation[0]
    assert 15 < report["noise_sigma"] < 35 and report["noise_sigma"] > 3 * report["noise_sigma_first_look"], report
    descriptor.model.set_sigma("quick")  # the first look alone is raised alike
    restorer(developed)
    quick = restorer.last_degradation[0]
    assert quick["noise_sigma"] == pytest.approx(2 * quick["noise_sigma_coarse_look"], abs=0.02), quick
    descriptor.model.set_sigma("auto")
    monkeypatch.setattr(infoflow, "level_for_correlated_noise", lambda level, looks: level)
    second_look_alone = restorer(developed)
    assert restorer.last_degradation[0]["noise_sigma"] < 10
    assert score(told) > score(second_look_alone) + 1.5


def test_a_raw_files_output_is_a_tiff_png_or_jpeg_never_raw(tmp_path, tiny_checkpoint):
    """One raw file to a named output: a raw name is a usage error naming the TIFF to
    use; an image name sets the format (16-bit PNG here); `--ext` likewise in a folder."""
    pytest.importorskip("rawpy")
    raw = write_dng(tmp_path / "shot.nef", linear(scene(64)))
    refused = restore("derain", str(raw), str(tmp_path / "clear.dng"), "--model", str(tiny_checkpoint))
    assert refused.returncode == 2 and "clear.tif" in refused.stderr and not (tmp_path / "clear.dng").exists()
    named = restore("derain", str(raw), str(tmp_path / "clear.png"), "--model", str(tiny_checkpoint))
    assert named.returncode == 0, named.stderr
    assert read_rgb16(tmp_path / "clear.png").shape == (64, 64, 3)
    as_jpeg = restore("derain", str(raw), str(tmp_path / "out"), "--ext", "jpg", "--json", "--model", str(tiny_checkpoint))
    assert as_jpeg.returncode == 0 and (tmp_path / "out" / "shot.jpg").is_file()
    assert "16-bit samples written as 8-bit" in json.loads(as_jpeg.stdout)["note"]


def test_a_dngs_xmp_and_iptc_travel_into_the_restored_tiff(tmp_path):
    """A DNG keeps a photographer's rating and keywords in its XMP (tag 700) and a caption
    in IPTC (tag 33723); the restored TIFF had only the EXIF. The XMP's orientation is
    set to 1, as the developed pixels are upright."""
    pytest.importorskip("rawpy")
    from PIL import IptcImagePlugin

    from restore_core.io.images import read_image, write_image

    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
           b'tiff:Orientation="8" xmp:Rating="4"/></rdf:RDF></x:xmpmeta>')
    caption = "Harbour in the rain"
    iptc = b"\x1c\x02\x78" + len(caption).to_bytes(2, "big") + caption.encode()
    raw = write_dng(tmp_path / "shot.dng", linear(scene(64)),
                    more_tags=((700, "B", len(xmp), xmp, True), (33723, "B", len(iptc), iptc, True)))
    developed = read_image(raw)
    upright = xmp.replace(b'tiff:Orientation="8"', b'tiff:Orientation="1"')
    assert developed.xmp == upright and developed.iptc == iptc
    write_image(tmp_path / "shot.tif", developed.rgb, developed)
    with Image.open(tmp_path / "shot.tif") as out:
        assert out.tag_v2[700] == upright and IptcImagePlugin.getiptcinfo(out) == {(2, 120): caption.encode()}
        assert out.getexif()[272] == "Test Camera"


def test_a_damaged_raw_file_is_one_line_naming_it_and_the_batch_goes_on(tmp_path, tiny_checkpoint):
    """A truncated DNG and a text file named .nef: each an error line naming the file and
    the cause, no output; the photo beside them is restored; exit 1. An over-large raw is
    refused from its header (--max-pixels), before it is developed."""
    pytest.importorskip("rawpy")
    folder = tmp_path / "card"
    whole = write_dng(folder / "whole.dng", linear(scene(64))).read_bytes()
    (folder / "cut.dng").write_bytes(whole[:len(whole) // 2])
    (folder / "notes.nef").write_text("not a raw file\n")
    cv2.imwrite(str(folder / "photo.png"), (scene(32) * 255).astype(np.uint8))
    result = restore("derain", str(folder), str(tmp_path / "out"), "--json", "--model", str(tiny_checkpoint))
    assert result.returncode == 1
    lines = {Path(row["input"]).name: row for row in map(json.loads, result.stdout.splitlines())}
    assert lines["photo.png"]["status"] == "ok" and lines["whole.dng"]["status"] == "ok"
    for name in ("cut.dng", "notes.nef"):
        assert lines[name]["status"] == "error" and lines[name]["error"].startswith("cannot develop camera raw: ")
        assert f"error: {folder / name}: cannot develop camera raw: " in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo.png", "whole.tif"]

    big = restore("derain", str(folder / "whole.dng"), str(tmp_path / "big"), "--max-pixels", "1000", "--json", "--model", str(tiny_checkpoint))
    assert big.returncode == 1 and "64x64 = 4,096 pixels, over the limit of 1,000" in json.loads(big.stdout)["error"]


def test_without_rawpy_raw_files_are_left_out_saying_how_to_add_them(tmp_path, tiny_checkpoint):
    """An install without rawpy: raw files in a folder get a skipped line and one warning
    that says `pip install 'restore[raw]'`; one named directly is an error saying so."""
    folder = tmp_path / "card"
    write_dng(folder / "IMG_1.CR2", linear(scene(32)))  # contents do not matter: never opened
    cv2.imwrite(str(folder / "a.png"), (scene(32) * 255).astype(np.uint8))
    result = restore("derain", str(folder), str(tmp_path / "out"), "--json", "--model", str(tiny_checkpoint), block_rawpy=True)
    assert result.returncode == 0, result.stderr
    lines = {Path(row["input"]).name: row for row in map(json.loads, result.stdout.splitlines())}
    assert lines["a.png"]["status"] == "ok"
    assert lines["IMG_1.CR2"]["status"] == "skipped" and lines["IMG_1.CR2"]["reason"] == "camera raw: a format restore cannot read"
    assert result.stderr.count("1 .cr2 (camera raw)") == 1 and "pip install 'restore[raw]'" in result.stderr
    direct = restore("derain", str(folder / "IMG_1.CR2"), str(tmp_path / "one"), "--json", "--model", str(tiny_checkpoint), block_rawpy=True)
    assert direct.returncode == 1
    assert json.loads(direct.stdout)["error"] == ("camera raw images cannot be read here: convert to PNG, TIFF or JPEG first "
                                                 "(camera raw: pip install 'restore[raw]' develops them)")


def test_a_shot_saved_as_raw_and_jpeg_is_restored_twice_and_said_once(tmp_path, tiny_checkpoint):
    """A camera set to raw + JPEG writes IMG_1.DNG beside IMG_1.JPG: both are restored
    (their outputs differ: IMG_1.tif, IMG_1.JPG), and one warning names the pair and the
    pattern that restores one kind alone; a photo without a twin is not counted;
    --quiet hides it."""
    pytest.importorskip("rawpy")
    folder = tmp_path / "card"
    for name in ("IMG_1", "IMG_2"):
        write_dng(folder / f"{name}.DNG", linear(scene(32)))
        cv2.imwrite(str(folder / f"{name}.JPG"), (scene(32) * 255).astype(np.uint8))
    cv2.imwrite(str(folder / "IMG_3.JPG"), (scene(32) * 255).astype(np.uint8))
    result = restore("derain", str(folder), str(tmp_path / "out"), "--model", str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["IMG_1.JPG", "IMG_1.tif", "IMG_2.JPG", "IMG_2.tif", "IMG_3.JPG"]
    said = [line for line in result.stderr.splitlines() if "are here twice" in line]
    assert len(said) == 1 and "2 photo(s) are here twice, as camera raw and as the camera's own JPG" in said[0], result.stderr
    assert "IMG_1.DNG and IMG_1.JPG" in said[0] and f"'{folder / '*.DNG'}'" in said[0]
    pattern = restore("derain", str(folder / "*.DNG"), str(tmp_path / "raws"), "--model", str(tiny_checkpoint))
    assert pattern.returncode == 0 and "are here twice" not in pattern.stderr
    assert sorted(p.name for p in (tmp_path / "raws").iterdir()) == ["IMG_1.tif", "IMG_2.tif"]
    quiet = restore("derain", str(folder), str(tmp_path / "q"), "--model", str(tiny_checkpoint), "--quiet")
    assert quiet.returncode == 0 and "are here twice" not in quiet.stderr


def test_restore_auto_tells_the_denoiser_a_raw_files_own_level(tmp_path, monkeypatch):
    """`restore auto` measures raw files' noise too: a raw photo its classifier routes to
    the denoiser is told the level of its sensor, as `restore denoise` tells it."""
    pytest.importorskip("rawpy")
    from conftest import router_with_scripted_classifier

    from restore_core.engine.inputs import Job
    from restore_core.engine.runner import restore_stream

    raw = write_dng(tmp_path / "IMG_1.DNG", linear(scene()), noise=0.005, shot=0.006, neutral=(0.5, 1.0, 0.65))
    router = router_with_scripted_classifier(monkeypatch, [("noise", 0.9)])
    assert router.takes_measured_noise
    [result] = restore_stream([Job(raw, Path(raw.name), tmp_path / "out" / "IMG_1.tif")], router)
    assert result.status == "ok" and result.model == "infoflow-denoise", result
    told = router.specialists["denoise"].last_degradation[0]
    assert told["noise_sigma"] == told["noise_sigma_from_raw"] and 10 < told["noise_sigma"] < 40, told


def test_a_failed_noise_measurement_still_develops_the_photo(tmp_path, monkeypatch):
    """Where measuring a raw file's noise fails (a camera's quirk), the photograph is
    still developed, with no level: the denoiser then estimates it from the image."""
    pytest.importorskip("rawpy")
    from restore_core.io import camera_raw
    from restore_core.io.images import read_image

    raw = write_dng(tmp_path / "IMG_1.DNG", linear(scene()), noise=0.005)
    assert read_image(raw, measure_noise=True).noise_level > 0

    def quirk(raw, developed):
        raise IndexError("an unexpected mosaic")

    monkeypatch.setattr(camera_raw, "noise_level_to_tell", quirk)
    developed = read_image(raw, measure_noise=True)
    assert developed.noise_level is None and developed.rgb.shape == (192, 192, 3)
    assert np.array_equal(developed.rgb, read_image(raw).rgb)
