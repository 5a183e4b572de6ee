"""Multi-page TIFFs (io.tiff_pages, engine.pages, the CLI): every page restored into one
new TIFF that keeps the page count, each page's layout, sample type, alpha plane and tags,
ImageJ's stack layout; nothing left behind on failure."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from conftest import SAMPLES, router_with_scripted_classifier
from test_cli import restore

from restore_core.checkpoint import load_checkpoint
from restore_core.engine.batch import restore_jobs
from restore_core.engine.inputs import Job
from restore_core.engine.pages import restore_paged
from restore_core.engine.runner import Restorer, RunOptions
from restore_core.io.tiff_pages import PageStack, is_page_stack, page_count
from restore_core.metrics import psnr


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _restorer(checkpoint: Path) -> Restorer:
    return Restorer(load_checkpoint(checkpoint), torch.device("cpu"), "fp32")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_derain_a_two_page_tiff_end_to_end(tmp_path):
    """The bundled rainy photos as two LZW-compressed pages (read by OpenCV):
    ``restore derain stack.tif out/`` writes one TIFF of two pages, each closer to its
    clean photo than the rainy one, and one JSON line with the page count."""
    names = ["motorcycle.png", "camera.png"]
    rainy = [_rgb(SAMPLES / "input" / name) for name in names]
    clean = [_rgb(SAMPLES / "target" / name) for name in names]
    pages = [Image.fromarray(page) for page in rainy]
    stack = tmp_path / "stack.tif"
    pages[0].save(stack, save_all=True, append_images=pages[1:], compression="tiff_lzw")
    run = restore("derain", str(stack), str(tmp_path / "out"), "--json")
    assert run.returncode == 0, run.stderr
    line = json.loads(run.stdout)
    assert line["status"] == "ok" and line["pages"] == 2 and line["output"] == str(tmp_path / "out" / "stack.tif")
    with tifffile.TiffFile(tmp_path / "out" / "stack.tif") as written:
        assert len(written.pages) == 2
        assert written.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE  # lossless, as the source was compressed
        restored = [page.asarray() for page in written.pages]
    gains = [psnr(out, target) - psnr(before, target) for out, before, target in zip(restored, rainy, clean)]
    assert min(gains) > 1.0, gains


def test_each_page_keeps_its_layout_sample_type_alpha_and_tags(tmp_path, rng, tiny_checkpoint):
    """Pages of different kinds in one file: 16-bit grey + alpha, float32 RGB, 8-bit
    min-is-white grey with a thumbnail's subfile type. Each comes back as it was stored
    (alpha bit-exact), with its description, resolution and ICC profile."""
    grey_alpha = rng.integers(0, 65536, (24, 20, 2), dtype=np.uint16)
    float_rgb = rng.random((16, 28, 3), dtype=np.float32)
    white_grey = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    icc = b"an icc profile, as bytes" * 3
    source = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(source) as writer:
        writer.write(grey_alpha, photometric="minisblack", extrasamples=("unassalpha",), metadata=None, description="first",
                     resolution=(300.0, 300.0), resolutionunit=2, iccprofile=icc)
        writer.write(float_rgb, photometric="rgb", metadata=None, description="second", compression="zlib")
        writer.write(white_grey, photometric="miniswhite", metadata=None, subfiletype=1)
    result = restore_paged(Job(source, Path("mixed.tif"), tmp_path / "out" / "mixed.tif"), _restorer(tiny_checkpoint))
    assert result.status == "ok" and result.pages == 3, result.error
    with tifffile.TiffFile(result.output) as written:
        first, second, third = written.pages
        assert first.dtype == np.uint16 and first.shape == (24, 20, 2) and first.extrasamples == (2,)
        assert np.array_equal(first.asarray()[..., 1], grey_alpha[..., 1])
        assert not np.array_equal(first.asarray()[..., 0], grey_alpha[..., 0])  # restored (by an untrained model)
        assert first.description == "first" and first.resolution == (300.0, 300.0) and first.iccprofile == icc
        assert second.dtype == np.float32 and second.shape == (16, 28, 3) and second.description == "second"
        assert third.photometric == tifffile.PHOTOMETRIC.MINISBLACK and third.subfiletype == 1 and third.dtype == np.uint8
        # min-is-white read inverted and written min-is-black: the same picture, not its negative
        restored = third.asarray().astype(int)
        assert np.corrcoef(restored.ravel(), 255 - white_grey.astype(int).ravel())[0, 1] > 0.5


def test_an_imagej_stack_is_written_as_imagej_reads_one(tmp_path, rng, tiny_checkpoint):
    """ImageJ reads the first page's directory only and the other pages by offset: the
    restored stack keeps ImageJ's description (its z-spacing) uncompressed in one block."""
    volume = rng.integers(0, 65536, (5, 16, 18), dtype=np.uint16)
    source = tmp_path / "cells.tif"
    tifffile.imwrite(source, volume, imagej=True, metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"})
    assert is_page_stack(source) and page_count(source) == 5
    result = restore_paged(Job(source, Path("cells.tif"), tmp_path / "out.tif"), _restorer(tiny_checkpoint))
    assert result.status == "ok" and result.pages == 5, result.error
    with tifffile.TiffFile(tmp_path / "out.tif") as written:
        assert written.is_imagej and written.imagej_metadata["images"] == 5 and written.imagej_metadata["spacing"] == 0.5
        offsets = [page.dataoffsets[0] for page in written.pages]
        assert all(page.compression == tifffile.COMPRESSION.NONE for page in written.pages)
        assert np.diff(offsets).tolist() == [16 * 18 * 2] * 4  # one contiguous block of samples
        assert written.asarray().shape == (5, 16, 18) and written.asarray().dtype == np.uint16


def test_a_rotated_page_is_restored_upright(tmp_path, tiny_checkpoint):
    """A page tagged orientation 6 (turn 90 degrees clockwise to view) comes out upright."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # the left half white: on top once upright
    source = tmp_path / "turned.tif"
    with tifffile.TiffWriter(source) as writer:
        for _ in range(2):
            writer.write(pixels, photometric="rgb", metadata=None, extratags=[(274, "H", 1, 6, True)])
    result = restore_paged(Job(source, Path("turned.tif"), tmp_path / "out.tif"), _restorer(tiny_checkpoint))
    assert result.status == "ok", result.error
    upright = tifffile.imread(tmp_path / "out.tif", key=1)
    assert upright.shape == (40, 20, 3) and upright[:20].mean() > upright[20:].mean() + 100


def test_a_model_failing_on_a_page_leaves_nothing_and_names_the_page(tmp_path, rng, tiny_checkpoint, monkeypatch):
    source = tmp_path / "stack.tif"
    tifffile.imwrite(source, rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8), photometric="rgb", metadata=None)
    restorer = _restorer(tiny_checkpoint)
    calls = []
    original = Restorer.__call__

    def failing_on_the_second(self, batch, *args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory\nmore detail")
        return original(self, batch, *args)

    monkeypatch.setattr(Restorer, "__call__", failing_on_the_second)
    out = tmp_path / "out"
    result = restore_paged(Job(source, Path("stack.tif"), out / "stack.tif"), restorer)
    assert result.status == "error" and result.error == "model failed at page 2: out of memory" and result.pages == 1
    assert list(out.iterdir()) == []  # no output, no temporary file


def test_a_truncated_stack_is_an_error_and_the_batch_goes_on(tmp_path, rng, tiny_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    full = folder / "full.tif"
    tifffile.imwrite(full, rng.integers(0, 256, (3, 32, 32), dtype=np.uint8), photometric="minisblack", metadata=None)
    data = full.read_bytes()
    (folder / "cut.tif").write_bytes(data[: len(data) - 1500])  # the last pages' samples are gone
    cv2.imwrite(str(folder / "photo.png"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    out = tmp_path / "out"
    jobs = [Job(p, Path(p.name), out / p.name) for p in sorted(folder.iterdir())]
    results = {r.input.name: r for r in restore_jobs(jobs, _restorer(tiny_checkpoint), RunOptions())}
    assert results["photo.png"].status == "ok" and results["full.tif"].status == "ok" and results["full.tif"].pages == 3
    assert results["cut.tif"].status == "error" and "page" in results["cut.tif"].error
    assert sorted(p.name for p in out.iterdir()) == ["full.tif", "photo.png"]


def test_a_stack_asked_for_as_png_is_refused_and_others_are_restored(tmp_path, rng, tiny_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "stack.tif", rng.integers(0, 256, (2, 16, 16), dtype=np.uint8), photometric="minisblack",
                     metadata=None)
    tifffile.imwrite(folder / "single.tif", rng.integers(0, 256, (16, 16), dtype=np.uint8), metadata=None)
    run = restore("derain", str(folder), str(tmp_path / "out"), "-m", str(tiny_checkpoint), "--ext", "png")
    assert run.returncode == 1
    assert "stack.tif: has 2 pages, and a png file holds one: write it as a TIFF" in run.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["single.png"]


def test_a_stack_page_over_the_pixel_limit_is_refused_before_decoding(tmp_path, rng):
    source = tmp_path / "big.tif"
    with tifffile.TiffWriter(source) as writer:
        writer.write(np.zeros((10, 10), np.uint8), metadata=None)
        writer.write(np.zeros((40, 40), np.uint8), metadata=None)
    with pytest.raises(ValueError, match=r"big.tif: page 2 is 40x40 = 1,600 pixels, over the limit of 1,000"):
        PageStack(source, max_pixels=1000)


def test_single_page_tiffs_and_other_files_are_not_stacks(tmp_path, rng):
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((4, 4), np.uint8))
    (tmp_path / "fake.tif").write_bytes(b"not a tiff")
    assert page_count(tmp_path / "one.tif") == 1 and not is_page_stack(tmp_path / "one.tif")
    assert page_count(tmp_path / "fake.tif") == 0 and page_count(tmp_path / "absent.tif") == 0


def test_the_python_interface_restores_a_stack_file(tmp_path, rng, tiny_checkpoint):
    import restore_core

    source = tmp_path / "stack.tiff"
    tifffile.imwrite(source, rng.integers(0, 65536, (4, 20, 24), dtype=np.uint16), photometric="minisblack", metadata=None)
    result = restore_core.load(str(tiny_checkpoint), device="cpu").restore_file(source, tmp_path / "restored.tiff")
    assert result.pages == 4
    restored = tifffile.imread(tmp_path / "restored.tiff")
    assert restored.shape == (4, 20, 24) and restored.dtype == np.uint16


def test_restore_auto_picks_one_model_for_a_whole_stack(tmp_path, rng, monkeypatch):
    """A classifier that would send pages to different models page by page: the stack goes
    to the model its first pages choose on average, all of it (as a video does)."""
    router = router_with_scripted_classifier(monkeypatch, [("noise", 0.6), ("rain", 0.9), ("noise", 0.6), ("rain", 0.9)])
    source = tmp_path / "stack.tif"
    tifffile.imwrite(source, rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), photometric="rgb", metadata=None)
    result = restore_paged(Job(source, Path("stack.tif"), tmp_path / "out.tif"), router)
    assert result.status == "ok" and result.pages == 4, result.error
    assert result.model == "taylor-derain"  # rain 0.9 twice against noise 0.6 twice
    assert result.degradation["rain"] == pytest.approx(0.455, abs=1e-4)


def test_an_imagej_stack_with_one_directory_is_refused_not_cut_to_its_first_image(tmp_path, tiny_checkpoint):
    """ImageJ writes a stack past 4 GB with the first page's directory alone (its
    description counts the images): read as an image, it gave its first image only."""
    source = tmp_path / "big.tif"
    tifffile.imwrite(source, np.zeros((8, 8), np.uint16), metadata=None, description="ImageJ=1.54f\nimages=5\nslices=5\n")
    assert is_page_stack(source)
    result = restore_paged(Job(source, Path("big.tif"), tmp_path / "out.tif"), _restorer(tiny_checkpoint))
    assert result.status == "error" and "an ImageJ stack of 5 images with 1 page directories" in result.error
    assert not (tmp_path / "out.tif").exists()


def test_a_stacks_pages_come_out_as_the_same_images_restored_one_by_one(tmp_path, rng, tiny_checkpoint):
    pages = rng.integers(0, 256, (3, 24, 32, 3), dtype=np.uint8)
    folder = tmp_path / "pages"
    folder.mkdir()
    for i, page in enumerate(pages):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(page, cv2.COLOR_RGB2BGR))
    tifffile.imwrite(folder / "stack.tif", pages, photometric="rgb", metadata=None)
    out = tmp_path / "out"
    jobs = [Job(p, Path(p.name), out / p.name) for p in sorted(folder.iterdir())]
    assert all(r.status == "ok" for r in restore_jobs(jobs, _restorer(tiny_checkpoint), RunOptions()))
    stack = tifffile.imread(out / "stack.tif")
    for i in range(3):
        assert np.array_equal(stack[i], _rgb(out / f"{i}.png"))


@pytest.mark.parametrize("ahead_bytes", [0, 2 * 16 * 20, 10**9])
def test_lzw_pages_decoded_in_runs_come_out_in_order(tmp_path, rng, monkeypatch, ahead_bytes):
    """OpenCV decodes runs of pages in one call (a page at a time costs a walk over every
    directory before it); each page still comes out as stored, whatever the run's length."""
    from restore_core.io import tiff_pages

    monkeypatch.setattr(tiff_pages, "_DECODED_AHEAD_BYTES", ahead_bytes)
    monkeypatch.setattr(tiff_pages, "exactly_decodable", lambda page: False)  # OpenCV's, with imagecodecs installed too
    pages = [rng.integers(0, 256, (16, 20), dtype=np.uint8) for _ in range(7)]
    images = [Image.fromarray(page) for page in pages]
    images[0].save(tmp_path / "lzw.tif", save_all=True, append_images=images[1:], compression="tiff_lzw")
    with PageStack(tmp_path / "lzw.tif", max_pixels=10**6) as stack:
        assert [page.decoder for page in stack.pages] == ["opencv"] * 7
        for page in stack.pages:
            assert np.array_equal(stack.pixels(page), pages[page.index])


def test_a_pyramids_reduced_levels_are_said_to_be_left_behind(tmp_path, tiny_checkpoint):
    source = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(source) as writer:
        for _ in range(2):
            writer.write(np.zeros((32, 32), np.uint8), subifds=1, metadata=None)
            writer.write(np.zeros((16, 16), np.uint8), subfiletype=1, metadata=None)  # the level below, as a SubIFD
    result = restore_paged(Job(source, Path("pyramid.tif"), tmp_path / "out.tif"), _restorer(tiny_checkpoint))
    assert result.status == "ok" and result.pages == 2
    assert result.note == "2 reduced-resolution level(s) of the pages (SubIFDs: a pyramid's) not kept"


def test_a_stack_of_signed_samples_is_refused_naming_the_page(tmp_path, rng):
    source = tmp_path / "signed.tif"
    tifffile.imwrite(source, rng.integers(-500, 500, (2, 8, 8), dtype=np.int16), photometric="minisblack", metadata=None)
    with pytest.raises(ValueError, match="signed.tif: page 1 holds int16 samples: restore reads unsigned 8 or 16-bit and float"):
        PageStack(source, max_pixels=10**6)


def test_a_scanned_documents_page_tags_travel(tmp_path, tiny_checkpoint):
    """A scanner's multi-page TIFF names the document, each page and its number, the
    scanner, and may hold XMP: each restored page keeps its own."""
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    source = tmp_path / "contract.tif"
    with tifffile.TiffWriter(source) as writer:
        for i in range(2):
            writer.write(np.full((16, 12), 200, np.uint8), metadata=None, extratags=[
                (269, "s", 0, "contract", True), (285, "s", 0, f"page {i + 1}", True), (297, "H", 2, (i, 2), True),
                (271, "s", 0, "Fujitsu", True), (700, "B", len(xmp), xmp, True)])
    result = restore_paged(Job(source, Path("contract.tif"), tmp_path / "out.tif"), _restorer(tiny_checkpoint))
    assert result.status == "ok", result.error
    with tifffile.TiffFile(tmp_path / "out.tif") as written:
        for i, page in enumerate(written.pages):
            tags = {code: page.tags[code].value for code in (269, 285, 297, 271, 700)}
            assert tags == {269: "contract", 285: f"page {i + 1}", 297: (i, 2), 271: "Fujitsu", 700: xmp}


def test_a_full_disk_while_writing_a_stack_stops_the_batch_and_leaves_nothing(tmp_path, rng, tiny_checkpoint, monkeypatch):
    import errno

    source = tmp_path / "stack.tif"
    tifffile.imwrite(source, rng.integers(0, 256, (3, 16, 16), dtype=np.uint8), photometric="minisblack", metadata=None)
    written = []

    def write_until_full(self, *args, **kwargs):
        written.append(1)
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    original = tifffile.TiffWriter.write
    monkeypatch.setattr(tifffile.TiffWriter, "write", write_until_full)
    out = tmp_path / "out"
    result = restore_paged(Job(source, Path("stack.tif"), out / "stack.tif"), _restorer(tiny_checkpoint))
    assert result.status == "error" and result.stops_batch and "No space left on device" in result.error
    assert list(out.iterdir()) == []
