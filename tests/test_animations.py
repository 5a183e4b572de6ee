"""Animated GIFs, PNGs and WebPs (io.animations, io.gif, engine.pages, the CLI): every
frame restored into one new animation with the source's timing and transparency; a
one-frame GIF read and written as any image; nothing left behind on failure."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from conftest import SAMPLES, router_with_scripted_classifier
from test_cli import restore
from test_sequences import as_is, panning_frames, write_frames

from restore_core.checkpoint import load_checkpoint
from restore_core.engine.batch import restore_jobs
from restore_core.engine.inputs import Job
from restore_core.engine.pages import restore_paged
from restore_core.engine.runner import Restorer, RunOptions
from restore_core.engine.temporal import TemporalConfig
from restore_core.io.animations import ANIMATION_FORMATS, Animation, frame_count, is_animation
from restore_core.io.containers import webp_is_lossless
from restore_core.io.gif import decode_gif, palette_image
from restore_core.io.images import ImageError, lost_on_write, read_image, write_image
from restore_core.metrics import psnr


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _restorer(checkpoint: Path) -> Restorer:
    return Restorer(load_checkpoint(checkpoint), torch.device("cpu"), "fp32")


def _frames(path: Path, mode: str = "RGB") -> tuple[list[np.ndarray], list[float], dict]:
    """Every frame as a viewer shows it, the durations, and the first frame's info."""
    with Image.open(path) as image:
        info = dict(image.info)
        frames, durations = [], []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            image.load()
            frames.append(np.asarray(image.convert(mode)))
            durations.append(float(image.info.get("duration") or 0))
    return frames, durations, info


def _save_animation(path: Path, frames: list[np.ndarray], **options) -> None:
    images = [palette_image(frame) if path.suffix == ".gif" else Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], **options)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("ext, options", [(".gif", {}), (".png", {}), (".webp", {"lossless": True})])
def test_derain_an_animation_end_to_end(tmp_path, ext, options):
    """Two rainy photos as the frames of an animation: ``restore derain anim OUT/`` writes
    one animation of two frames, each closer to its clean photo than the rainy frame it
    came from, with the durations and the play count kept, and one JSON line."""
    names = ["motorcycle.png", "motorcycle-detail.png"]
    source = tmp_path / f"rain{ext}"
    _save_animation(source, [_rgb(SAMPLES / "input" / name) for name in names], duration=[120, 240], loop=2, **options)
    rainy, _, _ = _frames(source)
    clean = [_rgb(SAMPLES / "target" / name) for name in names]
    run = restore("derain", str(source), str(tmp_path / "out"), "--json")
    assert run.returncode == 0, run.stderr
    line = json.loads(run.stdout)
    assert line["status"] == "ok" and line["frames"] == 2 and line["output"] == str(tmp_path / "out" / source.name)
    restored, durations, info = _frames(tmp_path / "out" / source.name)
    assert len(restored) == 2 and durations == [120, 240] and info["loop"] == 2
    gains = [psnr(out, target) - psnr(before, target) for out, before, target in zip(restored, rainy, clean)]
    assert min(gains) > 1.0, gains
    assert _leftovers(tmp_path / "out") == []
    if ext == ".webp":  # a lossless WebP's copy is lossless
        assert webp_is_lossless((tmp_path / "out" / source.name).read_bytes())


def test_frames_keep_their_alpha_and_transparent_pixels_show_no_earlier_frame(tmp_path, rng, tiny_checkpoint):
    """An APNG with soft alpha keeps every frame's alpha plane bit-exact; a GIF whose
    transparent region moves keeps each frame's own transparent pixels: written whole,
    an earlier frame does not show through a later one's holes."""
    frames = []
    for index in range(3):
        frame = rng.integers(0, 256, (24, 40, 4), dtype=np.uint8)
        frame[..., 3] = 255
        frame[:, : 8 + 10 * index, 3] = rng.integers(0, 128, (24, 8 + 10 * index))  # a growing see-through band
        frames.append(frame)
    apng = tmp_path / "soft.png"
    _save_animation(apng, frames, duration=[30, 60, 90], loop=0)
    result = restore_paged(Job(apng, Path("soft.png"), tmp_path / "out" / "soft.png"), _restorer(tiny_checkpoint))
    assert result.status == "ok" and result.frames == 3, result.error
    written, durations, _ = _frames(result.output, "RGBA")
    assert durations == [30, 60, 90]
    assert all(np.array_equal(out[..., 3], source[..., 3]) for out, source in zip(written, frames))

    gif = tmp_path / "holes.gif"
    _save_animation(gif, frames, duration=50, loop=0, disposal=2)
    result = restore_paged(Job(gif, Path("holes.gif"), tmp_path / "out" / "holes.gif"), _restorer(tiny_checkpoint))
    assert result.status == "ok" and result.frames == 3, result.error
    written, _, _ = _frames(result.output, "RGBA")
    for out, source in zip(written, frames):
        assert np.array_equal(out[..., 3] == 0, source[..., 3] < 128)


def test_an_animation_goes_to_an_animated_format_or_is_refused_with_nothing_written(tmp_path, rng, tiny_checkpoint):
    """A GIF's copy may be a WebP or an APNG (its frames and timing kept); a JPEG holds one
    picture: an error naming the file, no output, the batch going on."""
    frames = [rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(3)]
    source = tmp_path / "in" / "clip.gif"
    source.parent.mkdir()
    _save_animation(source, frames, duration=[40, 50, 60])
    cv2.imwrite(str(tmp_path / "in" / "still.png"), frames[0])
    for ext in ("webp", "png"):
        run = restore("denoise", str(source), str(tmp_path / f"clip.{ext}"), "--model", str(tiny_checkpoint))
        assert run.returncode == 0, run.stderr
        written, durations, info = _frames(tmp_path / f"clip.{ext}")
        assert len(written) == 3 and durations == [40, 50, 60]
        assert info["loop"] == 1  # a GIF without a loop count plays once, and so does its copy
    run = restore("denoise", str(tmp_path / "in"), str(tmp_path / "out"), "--ext", "jpg", "--model", str(tiny_checkpoint))
    assert run.returncode == 1
    assert f"{source}: has 3 frames, and a jpg file holds one: write it as an animation (.gif, .png, .webp" in run.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["still.jpg"]


@pytest.mark.skipif(".avif" not in ANIMATION_FORMATS, reason="this install's Pillow has no AVIF codec")
def test_an_animated_avif_is_restored_with_its_timing(tmp_path, rng, tiny_checkpoint):
    source = tmp_path / "clip.avif"
    _save_animation(source, [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(3)], duration=[50, 60, 70],
                    quality=90)
    assert is_animation(source)
    result = restore_paged(Job(source, Path("clip.avif"), tmp_path / "out.avif"), _restorer(tiny_checkpoint))
    assert result.status == "ok" and result.frames == 3, result.error
    written, durations, _ = _frames(result.output)
    assert len(written) == 3 and durations == [50, 60, 70] and written[0].shape == (32, 48, 3)


def test_an_apngs_frames_come_out_as_the_same_images_restored_one_by_one(tmp_path, rng, tiny_checkpoint):
    frames = rng.integers(0, 256, (3, 24, 32, 4), dtype=np.uint8)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i}.png")
    _save_animation(folder / "clip.png", list(frames), duration=40)
    out = tmp_path / "out"
    jobs = [Job(p, Path(p.name), out / p.name) for p in sorted(folder.iterdir())]
    assert all(r.status == "ok" for r in restore_jobs(jobs, _restorer(tiny_checkpoint), RunOptions()))
    animation, _, _ = _frames(out / "clip.png", "RGBA")
    for i in range(3):
        assert np.array_equal(animation[i], np.asarray(Image.open(out / f"{i}.png")))


@pytest.mark.parametrize("name", ["clip.png", "clip.tif"])
def test_temporal_smooths_an_animations_frames_and_a_stacks_pages_as_a_videos(tmp_path, rng, tiny_checkpoint, name):
    """``--temporal 2`` on an animation or a multi-page TIFF: each restored frame averaged
    with its aligned neighbours, as a video's are (the model left out: the smoothing alone)."""
    clean, noisy = panning_frames(rng, count=8)
    source = tmp_path / name
    if name.endswith(".tif"):
        tifffile.imwrite(source, np.stack(noisy), photometric="rgb", metadata=None)
    else:
        _save_animation(source, noisy, duration=40)
    options = RunOptions(temporal=TemporalConfig(radius=2))
    result = restore_paged(Job(source, Path(name), tmp_path / "out" / name), as_is(tiny_checkpoint), options)
    assert result.status == "ok", result.error
    smoothed = list(tifffile.imread(result.output)) if name.endswith(".tif") else _frames(result.output)[0]
    assert len(smoothed) == 8
    gains = [psnr(out, c) - psnr(n, c) for out, n, c in zip(smoothed, noisy, clean)]
    assert min(gains) > 1.0, gains


def test_an_animation_beside_an_image_sequence_is_restored_once_as_an_animation(tmp_path, rng, tiny_checkpoint):
    """With --temporal a folder's images are one sequence; an animation among them is
    restored as itself, not as a frame of it (nor refused as one)."""
    _, noisy = panning_frames(rng, count=4)
    folder = tmp_path / "in"
    write_frames(folder, noisy[:3])
    _save_animation(folder / "frame_2b.png", noisy, duration=40)
    run = restore("derain", str(folder), str(tmp_path / "out"), "--temporal", "2", "--json", "--model", str(tiny_checkpoint))
    assert run.returncode == 0, run.stderr
    lines = {Path(line["input"]).name: line for line in map(json.loads, run.stdout.splitlines())}
    assert sorted(lines) == ["frame_1.png", "frame_2.png", "frame_2b.png", "frame_3.png"]
    assert lines["frame_2b.png"]["frames"] == 4 and all(line["status"] == "ok" for line in lines.values())
    # Again for one frame, its neighbours (the animation among them) taken as context alone
    (tmp_path / "out" / "frame_3.png").unlink()
    again = restore("derain", str(folder), str(tmp_path / "out"), "--temporal", "2", "--json", "--skip-existing",
                    "--model", str(tiny_checkpoint))
    assert again.returncode == 0, again.stderr
    written = [json.loads(line) for line in again.stdout.splitlines() if json.loads(line)["status"] != "skipped"]
    assert [(Path(line["input"]).name, line["status"]) for line in written] == [("frame_3.png", "ok")]


def test_a_broken_or_oversized_animation_is_an_error_naming_it_with_nothing_left(tmp_path, rng, tiny_checkpoint):
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    whole = tmp_path / "whole.webp"
    _save_animation(whole, frames, duration=40, lossless=True)
    cut = tmp_path / "cut.webp"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) * 2 // 3])
    out = tmp_path / "out"
    result = restore_paged(Job(cut, Path("cut.webp"), out / "cut.webp"), _restorer(tiny_checkpoint))
    assert result.status == "error" and result.output is None
    assert not (out / "cut.webp").exists() and (not out.exists() or _leftovers(out) == [])
    with pytest.raises(ImageError, match=r"frames are 32x32 = 1,024 pixels, over the limit of 1,000 \(--max-pixels\)"):
        Animation(whole, max_pixels=1000)
    run = restore("denoise", str(whole), str(out / "small.webp"), "--max-pixels", "1000", "--model", str(tiny_checkpoint))
    assert run.returncode == 1 and "whole.webp" in run.stderr and not (out / "small.webp").exists()


def test_a_gif_cut_between_frames_is_restored_with_a_note_that_it_may_be_cut(tmp_path, rng, tiny_checkpoint):
    """Pillow reads the frames before a cut that falls between two frames without a word:
    the missing closing byte is said in the result's note."""
    whole = tmp_path / "whole.gif"
    _save_animation(whole, [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)], duration=40)
    data = whole.read_bytes()
    cut = tmp_path / "cut.gif"
    cut.write_bytes(data[: data.rfind(b"\x21\xf9\x04")])  # before the last frame's control block
    assert frame_count(cut) == 2
    result = restore_paged(Job(cut, Path("cut.gif"), tmp_path / "out.gif"), _restorer(tiny_checkpoint))
    assert result.status == "ok" and result.frames == 2
    assert result.note == "the file ends without a GIF's closing byte: it may be cut short after frame 2"
    whole_result = restore_paged(Job(whole, Path("whole.gif"), tmp_path / "whole-out.gif"), _restorer(tiny_checkpoint))
    assert whole_result.frames == 3 and whole_result.note is None


def test_an_encoder_failing_after_the_last_frame_names_the_writing_not_a_frame(tmp_path, rng, tiny_checkpoint, monkeypatch):
    """An encoder that refused the frames once they were all restored was reported as
    failing at frame N + 1 of N."""
    source = tmp_path / "clip.png"
    _save_animation(source, [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(2)], duration=40)
    monkeypatch.setattr(Image.Image, "save", lambda *args, **kwargs: (_ for _ in ()).throw(TypeError("no such option")))
    result = restore_paged(Job(source, Path("clip.png"), tmp_path / "out.png"), _restorer(tiny_checkpoint))
    assert result.status == "error" and result.error == "cannot write the frames: no such option"
    assert not (tmp_path / "out.png").exists() and _leftovers(tmp_path) == []


def test_an_apngs_default_image_stays_one_and_is_left_out_of_other_formats(tmp_path, rng, tiny_checkpoint):
    """An APNG's first picture may be a default image that viewers without animation show,
    outside the animation: its copy keeps it so, with the frames' own durations (they were
    shifted by one); a WebP copy has the animated frames alone, and says so."""
    source = tmp_path / "fallback.png"
    _save_animation(source, [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)],
                    default_image=True, duration=[70, 90])
    _, durations, info = _frames(source)
    assert info["default_image"] and durations == [0, 70, 90]  # as Pillow reads it
    restorer = _restorer(tiny_checkpoint)
    result = restore_paged(Job(source, Path("fallback.png"), tmp_path / "out.png"), restorer)
    assert result.status == "ok" and result.note is None, result.error
    _, durations, info = _frames(result.output)
    assert info["default_image"] and durations == [0, 70, 90]
    result = restore_paged(Job(source, Path("fallback.png"), tmp_path / "out.webp"), restorer)
    assert result.status == "ok" and "its default image" in result.note
    written, durations, _ = _frames(result.output)
    assert len(written) == 2 and durations == [70, 90]


def test_an_animation_whose_frames_would_not_fit_in_memory_is_refused_before_decoding(tmp_path, rng, tiny_checkpoint,
                                                                                     monkeypatch):
    """Pillow's encoders hold every frame until the file is written: an animation whose
    restored frames take more than half the free memory is an error, not a batch ended
    by the system's out-of-memory killer."""
    from restore_core.engine import pages

    source = tmp_path / "long.gif"
    _save_animation(source, [rng.integers(0, 256, (100, 100, 3), dtype=np.uint8) for _ in range(4)], duration=40)
    monkeypatch.setattr(pages, "available_memory_bytes", lambda: 200_000)  # 4 frames of 100x100 x 3 bytes: 120,000
    result = restore_paged(Job(source, Path("long.gif"), tmp_path / "out.gif"), _restorer(tiny_checkpoint))
    assert result.status == "error" and result.error.startswith("its 4 frames of 100x100 would hold 0.00011 GiB until the "
                                                               "animation is written, more than half the free memory")
    assert not (tmp_path / "out.gif").exists()
    monkeypatch.setattr(pages, "available_memory_bytes", lambda: 240_000)
    assert restore_paged(Job(source, Path("long.gif"), tmp_path / "out.gif"), _restorer(tiny_checkpoint)).status == "ok"


def test_only_files_of_many_frames_are_animations(tmp_path, rng):
    frame = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(frame).save(tmp_path / "still.png")
    Image.fromarray(frame).save(tmp_path / "still.gif")
    _save_animation(tmp_path / "two.png", [frame, 255 - frame])
    (tmp_path / "fake.gif").write_bytes(b"GIF89a")
    assert [frame_count(tmp_path / name) for name in ("still.png", "still.gif", "two.png", "fake.gif")] == [1, 1, 2, 0]
    assert is_animation(tmp_path / "two.png") and not is_animation(tmp_path / "still.gif")


def test_restore_auto_picks_one_model_for_a_whole_animation(tmp_path, rng, monkeypatch):
    router = router_with_scripted_classifier(monkeypatch, [("noise", 0.6), ("rain", 0.9), ("noise", 0.6), ("rain", 0.9)])
    source = tmp_path / "clip.webp"
    _save_animation(source, [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)], duration=40)
    result = restore_paged(Job(source, Path("clip.webp"), tmp_path / "out.webp"), router)
    assert result.status == "ok" and result.frames == 4, result.error
    assert result.model == "taylor-derain"  # rain 0.9 twice against noise 0.6 twice


def test_a_one_frame_gif_is_read_and_written_as_any_image(tmp_path, rng, tiny_checkpoint):
    """GIFs were left out of batches as a format restore cannot read. A one-frame GIF is
    an image: its transparent colour an alpha plane, its copy a GIF (256 colours,
    transparency kept) or any other format; a PNG's GIF copy says what it loses."""
    colour = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    alpha = np.where(rng.random((20, 30)) < 0.3, 0, 255).astype(np.uint8)
    source = tmp_path / "logo.gif"
    palette_image(np.dstack([colour, alpha])).save(source)
    image = read_image(source)
    assert image.layout == "rgba" and np.array_equal(image.alpha == 0, alpha == 0)
    write_image(tmp_path / "copy.gif", image.rgb, image)
    again = read_image(tmp_path / "copy.gif")
    assert np.array_equal(again.alpha == 0, alpha == 0)
    visible = alpha > 0
    assert np.abs(again.rgb[visible] - image.rgb[visible]).max() < 0.12  # within what a 255-colour palette gives
    assert lost_on_write(image, ".gif") is None
    photo = read_image(_png(tmp_path, colour))
    assert lost_on_write(photo, ".gif") == "colours reduced to a GIF's 256"
    assert lost_on_write(replace(photo, icc_profile=b"a profile"), ".gif") == "colours reduced to a GIF's 256; its ICC profile not kept"
    assert lost_on_write(replace(photo, layout="grey"), ".gif") is None  # 256 grey levels: a GIF holds them all

    run = restore("denoise", str(source), str(tmp_path / "out"), "--model", str(tiny_checkpoint))
    assert run.returncode == 0 and (tmp_path / "out" / "logo.gif").is_file(), run.stderr
    as_png = restore("denoise", str(source), str(tmp_path / "logo.png"), "--model", str(tiny_checkpoint))
    assert as_png.returncode == 0 and cv2.imread(str(tmp_path / "logo.png"), cv2.IMREAD_UNCHANGED).shape == (20, 30, 4)


def _png(folder: Path, rgb: np.ndarray) -> Path:
    path = folder / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_a_gifs_frames_share_one_palette_so_a_still_background_does_not_flicker(tmp_path, tiny_checkpoint):
    """With a palette per frame, a still background changed colour from frame to frame
    wherever two frames' palettes differed (40 % of its pixels, 0.83 levels, on this
    clip); the frames now share one palette, and the file is 17 times smaller."""
    background = _rgb(SAMPLES / "target" / "motorcycle.png")
    frames, still = [], np.ones(background.shape[:2], bool)
    for index in range(12):
        frame = background.copy()
        cv2.circle(frame, (30 + 30 * index, 160), 30, (50 + 15 * index, 80, 200 - 10 * index), -1)  # a moving ball
        still[:, max(0, 30 * index - 5): 30 * index + 65] = False
        frames.append(frame)
    source = tmp_path / "ball.png"
    _save_animation(source, frames, duration=50)
    result = restore_paged(Job(source, Path("ball.png"), tmp_path / "ball.gif"), as_is(tiny_checkpoint))
    assert result.status == "ok", result.error
    written, _, _ = _frames(result.output)
    assert all(np.array_equal(before[still], after[still]) for before, after in zip(written, written[1:]))
    assert min(psnr(out, frame) for out, frame in zip(written, frames)) > 30


def test_palette_frames_hold_the_picture_within_what_256_colours_give(rng):
    """Median cut: a smooth photo within 30 dB of itself, an image of few colours exact."""
    photo = _rgb(SAMPLES / "target" / "camera.png")
    reduced = np.asarray(palette_image(photo).convert("RGB"))
    assert psnr(reduced, photo) > 30
    few = rng.choice(np.array([[0, 0, 0], [255, 0, 0], [10, 200, 30]], np.uint8), size=(12, 16))
    assert np.array_equal(np.asarray(palette_image(few).convert("RGB")), few)
    grey = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    buffer = io.BytesIO()
    palette_image(grey).save(buffer, format="GIF")
    assert np.array_equal(decode_gif(buffer.getvalue()), grey)  # a GIF holds 256 grey levels exactly, and is read grey


def test_an_animated_png_named_apng_is_restored_as_one(tmp_path, tiny_checkpoint):
    """Browsers and GIF makers name animated PNGs .apng: a folder of them held no images."""
    frames = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8)) for i in range(3)]
    folder = tmp_path / "in"
    folder.mkdir()
    frames[0].save(folder / "loop.apng", format="PNG", save_all=True, append_images=frames[1:], duration=[100, 200, 300], loop=0)
    frames[0].save(folder / "still.apng", format="PNG")
    result = restore("derain", str(folder), str(tmp_path / "out"), "--json", "--model", str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr
    rows = {Path(row["input"]).name: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["loop.apng"]["frames"] == 3 and rows["still.apng"]["status"] == "ok"
    _, durations, _ = _frames(tmp_path / "out" / "loop.apng")
    assert durations == [100, 200, 300]
    with Image.open(tmp_path / "out" / "still.apng") as still:
        assert still.format == "PNG" and still.size == (32, 24)
