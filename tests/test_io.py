"""Image I/O: depth, layout, orientation and metadata survive a round trip."""


import dataclasses
import io
import os
import stat
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from conftest import SAMPLES

from restore_core.io.containers import encode_grey_alpha_png
from restore_core.io.images import READ_AS_PNG_EXTENSIONS, SUPPORTED_EXTENSIONS, ImageError, lost_on_write, read_image, write_image


def _round_trip(tmp_path, array_bgr, name):
    src = tmp_path / name
    assert cv2.imwrite(str(src), array_bgr)
    loaded = read_image(src)
    dst = tmp_path / ("out_" + name)
    write_image(dst, loaded.rgb, loaded)
    return loaded, cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("name", ["a.png", "a.tif"])
def test_16_bit_rgb_round_trip_is_exact(tmp_path, rng, name):
    array = rng.integers(0, 65536, size=(17, 23, 3), dtype=np.uint16)
    loaded, back = _round_trip(tmp_path, array, name)
    assert loaded.bit_depth == 16 and loaded.layout == "rgb"
    assert back.dtype == np.uint16 and np.array_equal(back, array)


@pytest.mark.parametrize("name, dtype, scale", [("a.png", np.uint8, 255), ("a.png", np.uint16, 65535),
                                                ("a.tif", np.float32, 1), ("a.tif", np.float64, 1)])
def test_colour_channels_come_back_in_rgb_order_for_every_sample_type(tmp_path, rng, name, dtype, scale):
    # OpenCV stores BGR; uint8/uint16/float32 are turned by cv2.cvtColor, float64 by NumPy.
    bgr = (rng.random((6, 9, 3)) * scale).astype(dtype)
    assert cv2.imwrite(str(tmp_path / name), bgr)
    loaded = read_image(tmp_path / name)
    assert loaded.rgb.dtype == np.float32 and loaded.rgb.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(loaded.rgb, bgr[..., ::-1].astype(np.float64) / scale, atol=1e-7)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_float_tiff_stays_float(tmp_path, rng, channels):
    """32-bit float TIFFs (grey, RGB, RGBA) come back as float32 TIFFs, samples exact,
    alpha untouched; not quantised to 16 bits."""
    array = rng.random((9, 13, channels) if channels > 1 else (9, 13)).astype(np.float32)
    loaded, back = _round_trip(tmp_path, array, "f.tif")
    assert loaded.bit_depth == 32 and loaded.layout == {1: "grey", 3: "rgb", 4: "rgba"}[channels]
    assert back.dtype == np.float32 and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_a_float_tiff_with_nan_is_refused_naming_it_and_infinities_are_clipped(tmp_path, rng):
    """A NaN reached the model, and the error blamed the checkpoint ("the model's output
    holds NaN ... a broken checkpoint")."""
    import imageio.v3 as iio

    array = rng.random((9, 13, 3)).astype(np.float32)
    array[2, 3, 1] = np.inf
    iio.imwrite(tmp_path / "hdr.tif", array)
    assert read_image(tmp_path / "hdr.tif").rgb[2, 3, 1] == 1.0
    array[4, 5, 0] = array[6, 7, 2] = np.nan
    iio.imwrite(tmp_path / "nan.tif", array)
    with pytest.raises(ImageError, match=r"nan.tif: 2 sample\(s\) are NaN \(not a number\)"):
        read_image(tmp_path / "nan.tif")


def test_float_tiff_written_as_png_becomes_16_bit(tmp_path, rng):
    array = rng.random((9, 13, 3)).astype(np.float32)
    assert cv2.imwrite(str(tmp_path / "f.tif"), array)
    loaded = read_image(tmp_path / "f.tif")
    write_image(tmp_path / "f.png", loaded.rgb, loaded)
    back = cv2.imread(str(tmp_path / "f.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, np.rint(array * 65535).astype(np.uint16))


def test_8_bit_grey_stays_grey(tmp_path, rng):
    array = rng.integers(0, 256, size=(9, 11), dtype=np.uint8)
    loaded, back = _round_trip(tmp_path, array, "g.png")
    assert loaded.layout == "grey" and loaded.rgb.shape == (9, 11, 3)
    assert back.shape == (9, 11) and np.array_equal(back, array)


def test_16_bit_grey_png(tmp_path, rng):
    array = rng.integers(0, 65536, size=(8, 8), dtype=np.uint16)
    _, back = _round_trip(tmp_path, array, "g16.png")
    assert back.dtype == np.uint16 and np.array_equal(back, array)


def test_rgba_alpha_passes_through_untouched(tmp_path, rng):
    array = rng.integers(0, 256, size=(10, 12, 4), dtype=np.uint8)
    loaded, back = _round_trip(tmp_path, array, "rgba.png")
    assert loaded.layout == "rgba"
    assert back.shape == (10, 12, 4) and np.array_equal(back, array)


def test_8_bit_grey_alpha_png_stays_grey_alpha(tmp_path, rng):
    array = rng.integers(0, 256, size=(10, 12, 2), dtype=np.uint8)
    src, dst = tmp_path / "la.png", tmp_path / "out_la.png"
    Image.fromarray(array, mode="LA").save(src)
    loaded = read_image(src)
    assert loaded.layout == "grey+alpha" and loaded.bit_depth == 8
    write_image(dst, loaded.rgb, loaded)
    with Image.open(dst) as out:
        assert out.mode == "LA" and np.array_equal(np.asarray(out), array)


def test_16_bit_grey_alpha_png_keeps_depth_and_alpha(tmp_path, rng):
    array = rng.integers(0, 65536, size=(9, 7, 2), dtype=np.uint16)
    src, dst = tmp_path / "la16.png", tmp_path / "out_la16.png"
    src.write_bytes(encode_grey_alpha_png(array))
    loaded = read_image(src)
    assert loaded.layout == "grey+alpha" and loaded.bit_depth == 16
    write_image(dst, loaded.rgb, loaded)
    assert dst.read_bytes()[24:26] == bytes([16, 4])  # IHDR: bit depth 16, colour type 4 (grey + alpha)
    back = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)  # OpenCV expands it to BGRA
    assert back.dtype == np.uint16
    assert np.array_equal(back[..., 0], array[..., 0]) and np.array_equal(back[..., 3], array[..., 1])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_grey_alpha_tiff_keeps_its_alpha_and_depth(tmp_path, rng, dtype):
    """OpenCV reads a grey + alpha TIFF as 8-bit grey (float: not at all): the alpha plane
    was dropped without a note and 16 bits became 8. Read and written exactly now."""
    import tifffile

    stored = rng.integers(0, 256, (9, 7, 2)).astype(dtype) * (257 if dtype == np.uint16 else 1)
    if dtype == np.float32:
        stored = rng.random((9, 7, 2), dtype=np.float32)
    src, dst = tmp_path / "grey-alpha.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, stored, photometric="minisblack", extrasamples=("unassalpha",), metadata=None, resolution=(300, 300),
                     resolutionunit="INCH")
    loaded = read_image(src)
    assert loaded.layout == "grey+alpha" and loaded.bit_depth == {np.uint8: 8, np.uint16: 16, np.float32: 32}[dtype]
    assert np.array_equal(loaded.alpha, stored[..., 1])
    write_image(dst, loaded.rgb, loaded)
    with tifffile.TiffFile(dst) as written:
        page = written.pages[0]
        assert page.extrasamples == (2,) and page.dtype == dtype
        assert page.resolution == (300.0, 300.0)  # Pillow cannot open 16-bit and float ones: read from the tags
        assert np.array_equal(page.asarray(), stored)  # the grey round-trips through [0, 1] too


@pytest.mark.parametrize("layout", ["rgba8-unassociated", "grey16-min-is-white", "rgb16-planar", "rgb-float16"])
def test_tiff_layouts_opencv_changed_are_read_as_stored(tmp_path, rng, layout):
    """OpenCV gave an 8-bit RGBA TIFF (Pillow's, GIMP's) colours multiplied by the alpha,
    a 16-bit min-is-white page its negative, a 16-bit RGB page stored plane by plane as
    garbage, and could not read float16 at all. Each is read as stored now."""
    import tifffile

    if layout == "rgba8-unassociated":
        stored, options = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8), {"photometric": "rgb", "extrasamples": ("unassalpha",)}
        expected = stored[..., :3] / 255.0
    elif layout == "grey16-min-is-white":
        stored, options = rng.integers(0, 65536, (9, 7), dtype=np.uint16), {"photometric": "miniswhite"}
        expected = np.repeat(((65535 - stored) / 65535.0)[..., None], 3, axis=2)
    elif layout == "rgb16-planar":
        stored, options = rng.integers(0, 65536, (3, 9, 7), dtype=np.uint16), {"photometric": "rgb", "planarconfig": "separate"}
        expected = np.moveaxis(stored, 0, -1) / 65535.0
    else:
        stored, options = rng.random((9, 7, 3)).astype(np.float16), {"photometric": "rgb"}
        expected = stored.astype(np.float64)
    tifffile.imwrite(tmp_path / "in.tif", stored, metadata=None, **options)
    loaded = read_image(tmp_path / "in.tif")
    assert np.abs(loaded.rgb - expected).max() < 1e-6
    if layout == "rgba8-unassociated":
        assert np.array_equal(loaded.alpha, stored[..., 3])


def test_an_lzw_rgba_tiffs_colours_are_divided_back_by_its_alpha(tmp_path, rng):
    """tifffile has no LZW codec here: OpenCV decodes it, multiplying the colours by an
    unassociated alpha; they are divided back (within a level where alpha is above half)."""
    rgba = rng.integers(0, 256, (32, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "lzw.tif", compression="tiff_lzw")
    loaded = read_image(tmp_path / "lzw.tif")
    error = np.abs(loaded.rgb * 255.0 - rgba[..., :3])
    assert error[rgba[..., 3] >= 128].max() <= 1.0 + 1e-3 and np.array_equal(loaded.alpha, rgba[..., 3])


def test_multi_frame_image_is_refused_not_truncated(tmp_path, rng):
    pages = [Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)) for _ in range(3)]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with pytest.raises(ImageError, match="pages.tif: has 3 frames"):
        read_image(path)
    # float32 RGB pages, which Pillow cannot open: their header is read directly
    ok, buffer = cv2.imencodemulti(".tif", [rng.random((6, 8, 3)).astype(np.float32) for _ in range(2)])
    (tmp_path / "float-pages.tif").write_bytes(buffer.tobytes())
    with pytest.raises(ImageError, match="float-pages.tif: has more than one page"):
        read_image(tmp_path / "float-pages.tif")


def test_camera_jpeg_with_an_mpo_preview_frame_is_read(tmp_path, rng):
    """Many camera JPEGs are MPO files whose second frame is a preview: the photo is frame 1."""
    photo = Image.fromarray(rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8))
    path = tmp_path / "camera.jpg"
    photo.save(path, format="MPO", save_all=True, append_images=[photo.resize((15, 10))])
    with Image.open(path) as check:
        assert check.format == "MPO" and check.n_frames == 2
    assert read_image(path).size == (20, 30)


def test_a_camera_mpo_jpeg_is_written_as_the_jpeg_it_is(tmp_path, rng):
    """Pillow names a JPEG with MPF previews "MPO": its 4:4:4 subsampling was not taken for
    a JPEG's, and the copy came out 4:2:0 (8.7 dB lost against itself on a photo)."""
    photo = Image.fromarray(rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8))
    path = tmp_path / "camera.jpg"
    photo.save(path, format="MPO", save_all=True, append_images=[photo.resize((15, 10))], quality=95, subsampling=0)
    loaded = read_image(path)
    assert loaded.source_format == "jpeg" and loaded.encoder_options.get("subsampling") == 0
    write_image(tmp_path / "copy.jpg", loaded.rgb, loaded)
    with Image.open(tmp_path / "copy.jpg") as copy:
        assert JpegImagePlugin.get_sampling(copy) == 0


def test_exif_rotated_jpeg_is_upright_and_metadata_kept(tmp_path):
    # A 40x20 (w x h) image whose left half is white, stored with orientation 6
    # (rotate 90 degrees clockwise to display): upright it is 20 wide, 40 tall.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    icc = b"fake-icc-profile-bytes" * 4
    src = tmp_path / "rot.jpg"
    Image.fromarray(pixels).save(src, exif=exif.tobytes(), icc_profile=icc, quality=100)
    loaded = read_image(src)
    assert loaded.rgb.shape == (40, 20, 3)
    assert loaded.rgb[:20].mean() > 0.9 and loaded.rgb[20:].mean() < 0.1  # white on top after rotation
    dst = tmp_path / "out.jpg"
    write_image(dst, loaded.rgb, loaded)
    with Image.open(dst) as out:
        assert out.size == (20, 40)
        assert out.info.get("icc_profile") == icc
        assert out.getexif().get(0x0112) == 1  # pixels upright, orientation reset


def _with_chunk_before_iend(png: bytes, kind: bytes, payload: bytes) -> bytes:
    import struct
    import zlib

    chunk = struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    iend = png.rindex(b"IEND") - 4  # the chunk's length field
    return png[:iend] + chunk + png[iend:]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_once_in_every_format(tmp_path, orientation):
    """The pixels come out as Pillow's exif_transpose shows them, for the 8 orientations in
    TIFF, JPEG, PNG and WebP. OpenCV's TIFF decoder turns the pixels itself (its JPEG, PNG
    and WebP decoders do not): TIFFs were turned twice (90 degrees became 180)."""
    from PIL import ImageOps

    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :10] = 255  # a white band on the left
    array[:5, :, 1] = 128  # a green tint on top: mirrorings show too
    for fmt, options in (("TIFF", {}), ("JPEG", {"quality": 100}), ("PNG", {}), ("WEBP", {"lossless": True})):
        path = tmp_path / f"o.{fmt.lower()}"
        image = Image.fromarray(array)
        exif = image.getexif()
        exif[0x0112] = orientation
        image.save(path, format=fmt, exif=exif.tobytes(), **options)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(path).convert("RGB"))).astype(np.float32) / 255
        loaded = read_image(path).rgb
        assert loaded.shape == expected.shape, fmt
        assert np.abs(loaded - expected).max() < 0.05, fmt


def test_png_exif_after_the_pixels_is_read_without_decoding_twice(tmp_path, monkeypatch):
    # PNG allows eXIf after IDAT; Pillow's PNG getexif() decodes every pixel to find it.
    # OpenCV decodes the pixels; Pillow must only read the header (Pillow's load fails here).
    from PIL import PngImagePlugin

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    ok, png = cv2.imencode(".png", pixels)
    src = tmp_path / "rot.png"
    src.write_bytes(_with_chunk_before_iend(png.tobytes(), b"eXIf", exif.tobytes().removeprefix(b"Exif\x00\x00")))
    plain = tmp_path / "plain.png"
    plain.write_bytes(png.tobytes())

    def no_pillow_decoding(self):
        raise AssertionError("Pillow decoded the pixels")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_pillow_decoding)
    loaded = read_image(src)
    assert loaded.rgb.shape == (40, 20, 3)  # orientation 6 applied: upright
    assert loaded.rgb[:20].mean() > 0.9 and loaded.rgb[20:].mean() < 0.1
    assert read_image(plain).rgb.shape == (20, 40, 3)


XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
       b'tiff:Orientation="6" xmp:Rating="5"/></rdf:RDF></x:xmpmeta>')


def test_xmp_and_print_resolution_travel_into_every_format_that_holds_them(tmp_path):
    """A photographer's XMP (rating, keywords, rights) and a scan's 300 dpi were dropped
    on the way through restore. They are written back into JPEG, PNG (iTXt, pHYs) and
    WebP (which has no dpi), the XMP's orientation set to 1 like the EXIF's, since the
    pixels come out turned."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "scan.jpg", exif=exif.tobytes(), xmp=XMP, dpi=(300, 300))
    loaded = read_image(tmp_path / "scan.jpg")
    upright = XMP.replace(b'tiff:Orientation="6"', b'tiff:Orientation="1"')
    assert loaded.rgb.shape[:2] == (10, 8) and loaded.xmp == upright and loaded.dpi == (300, 300)
    for name in ("out.jpg", "out.png", "out.webp", "out.tif"):
        write_image(tmp_path / name, loaded.rgb, loaded)
        with Image.open(tmp_path / name) as out:
            xmp = out.tag_v2[700] if name == "out.tif" else out.info.get("xmp") or out.info["XML:com.adobe.xmp"].encode()
            assert xmp == upright, name
            assert name == "out.webp" or tuple(round(v) for v in out.info["dpi"]) == (300, 300), name
        assert read_image(tmp_path / name).xmp == upright, name  # read back: APP1, iTXt, the WebP chunk, TIFF tag 700
    # A TIFF's XMP (its tag 700) goes into a JPEG as XMP, not as an EXIF tag; a 16-bit TIFF keeps it too
    from_tiff = read_image(tmp_path / "out.tif")
    write_image(tmp_path / "again.jpg", from_tiff.rgb, from_tiff)
    with Image.open(tmp_path / "again.jpg") as again:
        assert again.info["xmp"] == upright and 700 not in again.getexif()
    deep = dataclasses.replace(loaded, bit_depth=16)
    write_image(tmp_path / "deep.tif", deep.rgb, deep)
    deep_back = read_image(tmp_path / "deep.tif")
    assert deep_back.xmp == upright and deep_back.bit_depth == 16 and tuple(round(v) for v in deep_back.dpi) == (300, 300)


def _iptc(dataset: int, text: str) -> bytes:
    """One IPTC-IIM record of the application record (2:dataset)."""
    return b"\x1c\x02" + bytes([dataset]) + len(text.encode()).to_bytes(2, "big") + text.encode()


def _photoshop_app13(*resources: tuple[int, bytes]) -> bytes:
    """A JPEG APP13 segment with Photoshop's resource blocks, as Photoshop writes it."""
    blocks = b"".join(b"8BIM" + rid.to_bytes(2, "big") + b"\x00\x00" + len(data).to_bytes(4, "big") + data + b"\x00" * (len(data) % 2)
                      for rid, data in resources)
    payload = b"Photoshop 3.0\x00" + blocks
    return b"\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload


def test_iptc_captions_and_jpeg_comments_travel(tmp_path):
    """A news photo's IPTC caption, keywords and credit (JPEG APP13, TIFF tag 33723) and a
    JPEG's comment were dropped from restored JPEGs. The IPTC records go into JPEG
    (APP13, alone: Photoshop's thumbnail of the original stays behind) and TIFF outputs,
    from either; the comment into JPEG outputs."""
    from PIL import IptcImagePlugin, TiffImagePlugin


    records = _iptc(120, "Rain over Oslo harbour") + _iptc(25, "rain") + _iptc(116, "(c) Jane Doe")
    wanted = {(2, 120): b"Rain over Oslo harbour", (2, 25): b"rain", (2, 116): b"(c) Jane Doe"}
    buffer = tmp_path / "plain.jpg"
    Image.fromarray(np.full((8, 10, 3), 90, np.uint8)).save(buffer, quality=90, comment=b"shot from the ferry")
    plain = buffer.read_bytes()
    thumbnail = (0x040C, b"stale thumbnail of the original")
    (tmp_path / "news.jpg").write_bytes(plain[:2] + _photoshop_app13(thumbnail, (0x0404, records)) + plain[2:])
    loaded = read_image(tmp_path / "news.jpg")
    assert loaded.iptc == records and loaded.comment == b"shot from the ferry"
    for name in ("out.jpg", "out.tif"):
        write_image(tmp_path / name, loaded.rgb, loaded)
        with Image.open(tmp_path / name) as out:
            assert IptcImagePlugin.getiptcinfo(out) == wanted, name
            assert name == "out.tif" or out.info["comment"] == b"shot from the ferry"
        assert read_image(tmp_path / name).iptc == records, name
    assert b"stale thumbnail" not in (tmp_path / "out.jpg").read_bytes()
    # A TIFF's tag, typed LONG as Photoshop writes it, into a JPEG's APP13 (not into its EXIF) and a 16-bit TIFF
    padded = records + b"\x00" * (-len(records) % 4)
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[33723] = padded
    Image.fromarray(np.full((8, 10, 3), 90, np.uint8)).save(tmp_path / "scan.tif", tiffinfo=tags)
    tiff = bytearray((tmp_path / "scan.tif").read_bytes())
    ifd = int.from_bytes(tiff[4:8], "little")
    for entry in range(ifd + 2, ifd + 2 + 12 * int.from_bytes(tiff[ifd : ifd + 2], "little"), 12):
        if int.from_bytes(tiff[entry : entry + 2], "little") == 33723:  # UNDEFINED x n -> LONG x n/4, as Photoshop types it
            tiff[entry + 2 : entry + 8] = (4).to_bytes(2, "little") + (len(padded) // 4).to_bytes(4, "little")
    (tmp_path / "scan.tif").write_bytes(bytes(tiff))
    with Image.open(tmp_path / "scan.tif") as check:
        assert check.tag_v2.tagtype[33723] == 4
    scan = read_image(tmp_path / "scan.tif")
    assert scan.iptc == padded
    write_image(tmp_path / "scan.jpg", scan.rgb, scan)
    with Image.open(tmp_path / "scan.jpg") as out:
        assert IptcImagePlugin.getiptcinfo(out) == wanted and 33723 not in out.getexif()
    deep = dataclasses.replace(scan, bit_depth=16)
    write_image(tmp_path / "deep.tif", deep.rgb, deep)
    assert read_image(tmp_path / "deep.tif").iptc == padded
    # Records longer than one JPEG segment holds are split over several and read back whole
    long_caption = _iptc(120, "x" * 30000) + _iptc(120, "y" * 30000) + _iptc(120, "z" * 30000)
    write_image(tmp_path / "long.jpg", loaded.rgb, dataclasses.replace(loaded, iptc=long_caption))
    assert (tmp_path / "long.jpg").read_bytes().count(b"Photoshop 3.0\x00") == 2
    assert read_image(tmp_path / "long.jpg").iptc == long_caption


@pytest.mark.parametrize("sampling", [0, 2])
def test_a_jpeg_is_written_back_with_its_own_chroma_subsampling(tmp_path, sampling):
    """Pillow writes 4:2:0 unless told: a 4:4:4 JPEG (a high-quality export) came back
    with half its colour resolution, 8.7 dB below itself on the bundled motorcycle at
    quality 95. Each JPEG keeps its own subsampling; a PNG written as JPEG gets Pillow's."""
    from PIL import JpegImagePlugin

    colour = cv2.imread(str(SAMPLES / "target" / "motorcycle.png"))[:, :, ::-1]
    progressive = sampling == 2  # and a progressive JPEG stays progressive
    Image.fromarray(np.ascontiguousarray(colour)).save(tmp_path / "in.jpg", quality=92, subsampling=sampling, progressive=progressive)
    loaded = read_image(tmp_path / "in.jpg")
    write_image(tmp_path / "out.jpg", loaded.rgb, loaded)
    with Image.open(tmp_path / "out.jpg") as out:
        assert JpegImagePlugin.get_sampling(out) == sampling and bool(out.info.get("progressive")) == progressive
    again = read_image(tmp_path / "out.jpg").rgb
    mse = float(np.mean((again - loaded.rgb) ** 2))
    assert 10 * np.log10(1 / mse) > (44 if sampling == 0 else 42)  # measured 45.3 and 43.2 (4:4:4 written 4:2:0: 36.6)
    Image.fromarray(np.ascontiguousarray(colour)).save(tmp_path / "in.png")
    from_png = read_image(tmp_path / "in.png")
    write_image(tmp_path / "png.jpg", from_png.rgb, from_png)
    with Image.open(tmp_path / "png.jpg") as out:
        assert JpegImagePlugin.get_sampling(out) == 2


def test_a_lossless_webp_is_written_back_lossless(tmp_path, rng):
    """A lossless WebP came back lossy (quality 95): now bit for bit what was restored;
    a lossy one stays lossy."""
    from restore_core.io.containers import webp_is_lossless

    pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.webp", lossless=True, exif=Image.Exif().tobytes())  # VP8X, then VP8L
    Image.fromarray(pixels).save(tmp_path / "lossy.webp", quality=90)
    for name, lossless in (("in.webp", True), ("lossy.webp", False)):
        loaded = read_image(tmp_path / name)
        write_image(tmp_path / f"out-{name}", loaded.rgb, loaded)
        assert webp_is_lossless((tmp_path / f"out-{name}").read_bytes()) == lossless, name
    assert np.array_equal(read_image(tmp_path / "out-in.webp").rgb, read_image(tmp_path / "in.webp").rgb)


def test_a_pngs_text_chunks_are_kept_in_a_png(tmp_path):
    """tEXt, zTXt and iTXt chunks (author, copyright, an image generator's parameters)
    are copied whole into a PNG output, wherever they stood in the input; the XMP once,
    its orientation (which Pillow reads as the PNG's, and which turned the pixels) 1."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Ada")
    info.add_text("Comment", "a long comment " * 20, zip=True)
    info.add_itxt("parameters", "prompt: rain on glass", lang="en")
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "in.png", pnginfo=info)
    loaded = read_image(tmp_path / "in.png")
    write_image(tmp_path / "out.png", loaded.rgb, loaded)
    with Image.open(tmp_path / "out.png") as out:
        out.load()
        assert out.text == {"Author": "Ada", "Comment": "a long comment " * 20, "parameters": "prompt: rain on glass",
                            "XML:com.adobe.xmp": XMP.decode().replace('tiff:Orientation="6"', 'tiff:Orientation="1"')}
    assert (tmp_path / "out.png").read_bytes().count(b"XML:com.adobe.xmp") == 1


def test_a_pngs_colour_chunks_are_kept_in_a_png(tmp_path):
    """A linear PNG says so by its gAMA (1.0); browsers honour it, and the restored copy,
    without it, showed far darker there. gAMA, cHRM, sRGB and an HDR PNG's cICP are
    copied whole into a PNG output, before its image data."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    colour = [chunk(b"gAMA", struct.pack(">I", 100000)), chunk(b"cHRM", struct.pack(">8I", *range(8))),
              chunk(b"sRGB", b"\x00"), chunk(b"cICP", bytes([9, 16, 0, 1]))]  # BT.2020 primaries, PQ transfer, full range
    plain = cv2.imencode(".png", np.full((6, 6, 3), 90, np.uint8))[1].tobytes()
    (tmp_path / "linear.png").write_bytes(plain[:33] + b"".join(colour) + plain[33:])  # after IHDR
    loaded = read_image(tmp_path / "linear.png")
    write_image(tmp_path / "out.png", loaded.rgb, loaded)
    written = (tmp_path / "out.png").read_bytes()
    assert all(written.count(c) == 1 and written.index(c) < written.index(b"IDAT") for c in colour)
    with Image.open(tmp_path / "out.png") as out:
        assert out.info["gamma"] == 1.0
    write_image(tmp_path / "out.jpg", loaded.rgb, loaded)  # JPEG has no place for them: nothing breaks
    assert read_image(tmp_path / "out.jpg").rgb.shape == (6, 6, 3)


def test_icc_profile_kept_in_png(tmp_path):
    icc = b"another-fake-icc" * 8
    src = tmp_path / "c.png"
    Image.fromarray(np.full((6, 6, 3), 128, np.uint8)).save(src, icc_profile=icc)
    loaded = read_image(src)
    dst = tmp_path / "d.png"
    write_image(dst, loaded.rgb, loaded)
    with Image.open(dst) as out:
        assert out.info.get("icc_profile") == icc


@pytest.mark.parametrize("channels", [1, 3])
def test_icc_profile_kept_in_16_bit_tiff(tmp_path, rng, channels):
    """OpenCV writes 16-bit TIFFs without metadata; the profile is added to its IFD
    (add_tiff_metadata), pixels untouched. An odd length checks the padding to even offsets."""
    from restore_core.io.containers import add_tiff_metadata

    icc = b"fake-icc-profile" * 8 + b"x"
    array = rng.integers(0, 65536, size=(9, 13, channels) if channels > 1 else (9, 13), dtype=np.uint16)
    ok, buffer = cv2.imencode(".tif", array)
    src = tmp_path / "a.tif"
    src.write_bytes(add_tiff_metadata(buffer.tobytes(), icc))
    loaded = read_image(src)
    assert loaded.icc_profile == icc and loaded.bit_depth == 16
    dst = tmp_path / "b.tif"
    write_image(dst, loaded.rgb, loaded)
    with Image.open(dst) as out:
        assert out.info.get("icc_profile") == icc
    np.testing.assert_array_equal(cv2.imread(str(dst), cv2.IMREAD_UNCHANGED), array)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_icc_profile_and_pixel_budget_of_float_tiffs(tmp_path, rng, channels):
    """Pillow cannot open RGB and RGBA float32 TIFFs: their profile was lost on read and
    their size checked only after decoding. The first IFD is read here instead."""
    from restore_core.io.containers import add_tiff_metadata
    from restore_core.io.images import ImageError

    icc = b"fake-icc-profile" * 8 + b"x"
    array = rng.random((9, 13, channels) if channels > 1 else (9, 13)).astype(np.float32)
    ok, buffer = cv2.imencode(".tif", array)
    src = tmp_path / "f.tif"
    src.write_bytes(add_tiff_metadata(buffer.tobytes(), icc))
    loaded = read_image(src)
    assert loaded.icc_profile == icc and loaded.bit_depth == 32 and loaded.source_format == "tiff"
    dst = tmp_path / "g.tif"
    write_image(dst, loaded.rgb, loaded)
    assert read_image(dst).icc_profile == icc
    np.testing.assert_array_equal(cv2.imread(str(dst), cv2.IMREAD_UNCHANGED), array)
    with pytest.raises(ImageError, match=r"image is 13x9 = 117 pixels, over the limit of 100 \(--max-pixels\)"):
        read_image(src, max_pixels=100)


@pytest.mark.parametrize(
    "content, cause",
    [(b"", "empty file"), (b"this is text, not an image", "cannot decode"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "cannot decode")],
)
def test_bad_files_raise_one_line_error_naming_the_file(tmp_path, content, cause):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert "bad.png" in message and cause in message and "\n" not in message


def test_too_many_pixels_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageError, match="over the limit"):
        read_image(path, max_pixels=5000)


def test_failed_write_leaves_no_file(tmp_path, rng, monkeypatch):
    src = tmp_path / "x.png"
    cv2.imwrite(str(src), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    loaded = read_image(src)
    out_dir = tmp_path / "out"
    with pytest.raises(ImageError, match="cannot encode"):
        write_image(out_dir / "x.unknownformat", loaded.rgb, loaded)

    def broken_replace(a, b):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(ImageError, match="No space left"):
        write_image(out_dir / "x.png", loaded.rgb, loaded)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []  # no final file, no temporary left


def test_temporary_files_a_killed_run_left_are_removed_when_stale_and_named_for_an_output(tmp_path):
    """kill -9 during a write leaves mkstemp's file: hidden, so it piled up unseen (a
    whole video's size for a join). Only files named for the given outputs and
    untouched for the hour go: a fresh one may be another shard's write under way."""
    import tempfile
    import time

    from restore_core.io.files import remove_stale_temporaries, temporary_prefix

    out = tmp_path / "out"
    out.mkdir()

    def left_by_a_killed_write(output: Path, suffix: str = ".part", age_s: float = 7200) -> Path:
        fd, name = tempfile.mkstemp(prefix=temporary_prefix(output), suffix=suffix, dir=output.parent)
        os.close(fd)
        os.utime(name, (time.time() - age_s, time.time() - age_s))
        return Path(name)

    old_image = left_by_a_killed_write(out / "a.png")
    old_video = left_by_a_killed_write(out / "clip.mp4", suffix=".part.mp4")
    fresh = left_by_a_killed_write(out / "a.png", age_s=60)
    someone_elses = left_by_a_killed_write(out / "other.png")
    not_ours = out / ".a.png.notes"
    not_ours.write_text("x")
    os.utime(not_ours, (time.time() - 7200, time.time() - 7200))

    removed = remove_stale_temporaries([out / "a.png", out / "clip.mp4", tmp_path / "not-made-yet" / "b.png"])
    assert sorted(removed) == sorted([old_image, old_video])
    assert sorted(out.iterdir()) == sorted([fresh, someone_elses, not_ours])


def test_a_name_near_the_file_systems_limit_is_written_and_its_temporary_file_found(tmp_path, rng):
    """83 CJK characters are 249 bytes, a valid name; the temporary name added 15 bytes
    to it and every write failed with "File name too long"."""
    import tempfile
    import time

    from restore_core.io.files import remove_stale_temporaries, temporary_prefix

    src = tmp_path / "x.png"
    cv2.imwrite(str(src), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    loaded = read_image(src)
    long_name = tmp_path / "out" / ("雨" * 82 + ".png")
    assert len(os.fsencode(long_name.name)) == 250
    write_image(long_name, loaded.rgb, loaded)
    assert read_image(long_name).rgb.shape == (8, 8, 3)
    fd, left = tempfile.mkstemp(prefix=temporary_prefix(long_name), suffix=".part.mp4", dir=long_name.parent)
    os.close(fd)
    assert len(os.fsencode(Path(left).name)) <= 255
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temporaries([long_name.with_name("雨" * 81 + "x.png")]) == []  # cut alike, told apart by the hash
    assert remove_stale_temporaries([long_name]) == [Path(left)]


def test_outputs_get_normal_file_permissions(tmp_path, rng):
    import os
    import stat

    src = tmp_path / "x.png"
    cv2.imwrite(str(src), rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    loaded = read_image(src)
    write_image(tmp_path / "y.png", loaded.rgb, loaded)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "y.png").stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("mode", ["RGB", "P", "CMYK"])
def test_a_tiffs_layout_tags_stay_behind_and_its_metadata_travels(tmp_path, rng, mode):
    """Pillow reads a TIFF's whole first IFD as its EXIF: written into the copy, a CMYK
    or palette TIFF's layout tags (photometric, samples, ink set, colour map) made the
    restored TIFF unreadable, and a JPEG copy carried strip offsets into nowhere. Only
    the metadata travels now; a CMYK image is read as RGB without a made-up alpha."""
    exif = Image.Exif()
    exif[271], exif[272], exif[33432] = "Camera maker", "Model 7", "(c) someone"
    source = Image.fromarray(rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)).convert(mode)
    src = tmp_path / "scan.tif"
    source.save(src, compression="tiff_lzw", exif=exif)
    loaded = read_image(src)
    assert loaded.layout == "rgb" and loaded.alpha is None
    assert (loaded.read_note is not None and "CMYK converted to RGB" in loaded.read_note) == (mode == "CMYK")
    expected = np.asarray(source.convert("RGB"))
    for name in ("copy.tif", "copy.jpg"):
        write_image(tmp_path / name, loaded.rgb, loaded)
        with Image.open(tmp_path / name) as out:
            out.load()
            tags = out.getexif()
            assert (tags[271], tags[272], tags[33432]) == ("Camera maker", "Model 7", "(c) someone"), name
            assert 273 not in tags or name == "copy.tif"  # strip offsets: the TIFF's own, never the source's
        decoded = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)
        assert decoded is not None and decoded.shape == (12, 10, 3), name
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "copy.tif"))[..., ::-1], expected)


def test_a_cmyk_profile_is_not_kept_for_rgb_pixels(tmp_path, rng):
    from restore_core.io.images import lost_on_write

    cmyk_profile = bytearray(128)
    cmyk_profile[16:20], cmyk_profile[36:40] = b"CMYK", b"acsp"  # the header fields that name it
    src = tmp_path / "print.jpg"
    Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).convert("CMYK").save(src, icc_profile=bytes(cmyk_profile))
    loaded = read_image(src)
    assert loaded.icc_profile is None and loaded.layout == "rgb"
    assert lost_on_write(loaded, ".png") == ("CMYK converted to RGB without colour management; "
                                             "its CMYK ICC profile dropped (it does not describe RGB pixels)")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_grey_pngs_transparent_key_becomes_its_alpha(tmp_path, dtype):
    """A grey PNG may mark one grey value see-through (tRNS); OpenCV ignores it, and the
    restored copy came out opaque. It is read as an alpha plane and written as one."""
    grey = (np.arange(20).reshape(4, 5) * (10 if dtype == np.uint8 else 3000)).astype(dtype)
    src = tmp_path / "key.png"
    Image.fromarray(grey).save(src, transparency=int(grey[1, 1]))
    loaded = read_image(src)
    assert loaded.layout == "grey+alpha"
    write_image(tmp_path / "out.png", loaded.rgb, loaded)
    back = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)  # grey + alpha, expanded to BGRA by OpenCV
    assert back.dtype == dtype
    np.testing.assert_array_equal(back[..., 0], grey)
    np.testing.assert_array_equal(back[..., 3] == 0, grey == grey[1, 1])


def test_samples_deeper_than_the_output_format_are_said(tmp_path, rng):
    """A 16-bit scan written as JPEG, or a float TIFF as PNG, loses depth: the note says
    so (the --json line and the run's warning carry it); formats that keep it say nothing."""
    from restore_core.io.images import lost_on_write

    array = rng.integers(0, 65536, size=(6, 7, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "scan.png"), array)
    sixteen = read_image(tmp_path / "scan.png")
    assert lost_on_write(sixteen, ".jpg") == "16-bit samples written as 8-bit jpg (png and tif keep 16 bits)"
    assert lost_on_write(sixteen, ".PNG") is None and lost_on_write(sixteen, ".tif") is None
    cv2.imwrite(str(tmp_path / "f.tif"), rng.random((6, 7, 3)).astype(np.float32))
    floating = read_image(tmp_path / "f.tif")
    assert lost_on_write(floating, ".png") == "float samples written as 16-bit png (tif keeps float)"
    assert lost_on_write(floating, ".tiff") is None
    write_image(tmp_path / "f.png", floating.rgb, floating)
    assert cv2.imread(str(tmp_path / "f.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # what the note says


avif = pytest.mark.skipif(".avif" not in SUPPORTED_EXTENSIONS, reason="this OpenCV/Pillow install has no AVIF codec")


@avif
@pytest.mark.parametrize("bits", [10, 12])
def test_a_10_or_12_bit_avif_is_read_on_the_16_bit_scale(tmp_path, rng, bits):
    """OpenCV hands 10/12-bit AVIF samples over in their own range (white = 1023 or
    4095): read as if 16-bit they came out 64x or 16x too dark. The file's pixi box
    says the depth."""
    top = 2**bits - 1
    samples = rng.integers(0, top + 1, size=(16, 18, 3)).astype(np.uint16)
    samples[0, 0] = top
    ok, buffer = cv2.imencode(".avif", samples, [cv2.IMWRITE_AVIF_DEPTH, bits, cv2.IMWRITE_AVIF_QUALITY, 100])
    (tmp_path / "deep.avif").write_bytes(buffer.tobytes())
    loaded = read_image(tmp_path / "deep.avif")
    assert loaded.bit_depth == 16 and loaded.rgb[0, 0].tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(loaded.rgb, samples[..., ::-1] / top, atol=1 / 65535)


@avif
def test_avif_round_trip_keeps_profile_and_exif(tmp_path):
    exif = Image.Exif()
    exif[271] = "Phone maker"
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    smooth = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8), (0, 0), 3)
    Image.fromarray(smooth).save(tmp_path / "a.avif", quality=95, icc_profile=icc, exif=exif)
    loaded = read_image(tmp_path / "a.avif")
    assert loaded.bit_depth == 8 and loaded.icc_profile == icc
    write_image(tmp_path / "b.avif", loaded.rgb, loaded)
    with Image.open(tmp_path / "b.avif") as out:
        assert out.format == "AVIF" and out.info.get("icc_profile") == icc and out.getexif()[271] == "Phone maker"
        assert np.abs(np.asarray(out.convert("RGB")).astype(int) - smooth).mean() < 3  # lossy, close


def test_a_file_in_a_format_restore_cannot_read_says_which(tmp_path):
    path = tmp_path / "IMG_0001.QOI"
    path.write_bytes(b"qoif" + bytes(100))
    with pytest.raises(ImageError, match=r"IMG_0001.QOI: QOI images cannot be read here: convert to PNG, TIFF or JPEG first$"):
        read_image(path)


def test_heic_without_its_codec_says_how_to_get_it(tmp_path, monkeypatch):
    from restore_core.io import images

    monkeypatch.setitem(images.UNREADABLE_FORMATS, ".heic", "HEIC")
    monkeypatch.setattr(images, "_HEIF_AVAILABLE", False)
    path = tmp_path / "IMG_0002.HEIC"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(100))
    with pytest.raises(ImageError, match=r"HEIC images cannot be read here: convert .* first \(HEIC/HEIF: pip install 'restore\[heic\]' adds them\)"):
        read_image(path)


heif = pytest.mark.skipif(".heic" not in SUPPORTED_EXTENSIONS, reason="pillow-heif is not installed (pip install 'restore[heic]')")


@heif
def test_a_heic_photo_is_read_turned_once_and_written_back_with_its_metadata(tmp_path):
    """iPhone photos: libheif turns the pixels by the file's own rotation (and Pillow then
    reports EXIF orientation 1), so the reader must not turn them again."""
    import pillow_heif

    pillow_heif.register_heif_opener()  # to write the test file
    exif = Image.Exif()
    exif[0x0112], exif[271] = 6, "Apple"  # stored as a rotation of the picture
    picture = np.zeros((20, 30, 3), np.uint8)
    picture[:5, :10] = 255  # a white block, top left as shot
    Image.fromarray(picture).save(tmp_path / "IMG_1.HEIC", format="HEIF", quality=95, exif=exif.tobytes())
    loaded = read_image(tmp_path / "IMG_1.HEIC")
    assert loaded.rgb.shape == (30, 20, 3) and loaded.bit_depth == 8  # turned a quarter, once
    white = np.argwhere(loaded.rgb[..., 0] > 0.8)
    assert white.min(0).tolist()[1] >= 14 and white.max(0).tolist()[0] <= 10  # top right after a clockwise turn
    write_image(tmp_path / "out.heic", loaded.rgb, loaded)
    with Image.open(tmp_path / "out.heic") as out:
        assert out.format == "HEIF" and out.size == (20, 30) and out.getexif()[271] == "Apple"
    assert read_image(tmp_path / "out.heic").rgb.shape == (30, 20, 3)  # not turned again on the way back


@heif
def test_a_heif_collection_gives_its_primary_image_and_says_the_others_are_not_kept(tmp_path):
    """A HEIF may hold several top-level images (a burst, a collection); the primary one
    is the image viewers show (libheif and GraphicsMagick read it alone). It is restored,
    and the note says the others are not kept: the output holds one image."""
    import pillow_heif

    pillow_heif.register_heif_opener()  # to write the test file
    shades = [Image.fromarray(np.full((16, 24, 3), level, np.uint8)) for level in (40, 140, 240)]
    shades[0].save(tmp_path / "burst.heic", format="HEIF", save_all=True, append_images=shades[1:], primary_index=1, quality=95)
    loaded = read_image(tmp_path / "burst.heic")
    assert abs(loaded.rgb.mean() * 255 - 140) < 3
    assert loaded.read_note == "holds 3 images: the primary one restored, the other 2 not kept"
    shades[0].save(tmp_path / "one.heic", format="HEIF", quality=95)
    assert read_image(tmp_path / "one.heic").read_note is None


def _bmff_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _bmff_children(data: bytes):
    position = 0
    while position + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[position:position + 8])
        yield kind, data[position + 8:position + size]
        position += size


def _shift_iloc(iloc: bytes, delta: int) -> bytes:
    """An ``iloc`` box's payload with every absolute extent offset moved by ``delta``."""
    version, data, position = iloc[0], bytearray(iloc), 4
    offset_size, length_size, base_size = data[position] >> 4, data[position] & 15, data[position + 1] >> 4
    index_size = data[position + 1] & 15 if version in (1, 2) else 0
    position += 2
    count_size = 2 if version < 2 else 4
    count = int.from_bytes(data[position:position + count_size], "big")
    position += count_size
    for _ in range(count):
        position += count_size + (2 if version in (1, 2) else 0) + 2  # item ID, construction method, data reference
        if base_size:
            base = int.from_bytes(data[position:position + base_size], "big")
            data[position:position + base_size] = (base + delta).to_bytes(base_size, "big")
        position += base_size
        extents = int.from_bytes(data[position:position + 2], "big")
        position += 2
        for _ in range(extents):
            position += index_size
            if offset_size and not base_size:
                offset = int.from_bytes(data[position:position + offset_size], "big")
                data[position:position + offset_size] = (offset + delta).to_bytes(offset_size, "big")
            position += offset_size + length_size
    return bytes(data)


def _with_auxiliary_image(heic: bytes, urn: bytes) -> bytes:
    """A two-image HEIC (item 1 primary) whose item 2 is made an auxiliary image of item 1,
    as an iPhone stores its HDR gain map: an ``auxC`` property naming ``urn``, associated
    with item 2 in ``ipma``, and an ``auxl`` reference from item 2 to item 1 in ``iref``.
    pillow-heif writes no auxiliary images, so the boxes are put in by hand."""
    top = list(_bmff_children(heic))
    meta = dict(top)[b"meta"]
    inner = []
    for kind, payload in _bmff_children(meta[4:]):
        if kind == b"iprp":
            parts = []
            for part, body in _bmff_children(payload):
                if part == b"ipco":
                    aux_index = len(list(_bmff_children(body))) + 1
                    body += _bmff_box(b"auxC", bytes(4) + urn + b"\0")
                elif part == b"ipma":  # version 0, flags 0: 16-bit item IDs, 1-byte associations
                    entries, position = [], 8
                    for _ in range(struct.unpack(">I", body[4:8])[0]):
                        item, count = struct.unpack(">HB", body[position:position + 3])
                        associations = body[position + 3:position + 3 + count]
                        position += 3 + count
                        if item == 2:
                            associations, count = associations + bytes([aux_index]), count + 1
                        entries.append(struct.pack(">HB", item, count) + associations)
                    body = body[:8] + b"".join(entries)
                parts.append(_bmff_box(part, body))
            payload = b"".join(parts)
        inner.append((kind, payload))
    inner.append((b"iref", bytes(4) + _bmff_box(b"auxl", struct.pack(">HHH", 2, 1, 1))))
    grown = sum(8 + len(payload) for _, payload in inner) + 4 - len(meta)  # mdat moves by this much
    new_meta = meta[:4] + b"".join(_bmff_box(kind, _shift_iloc(payload, grown) if kind == b"iloc" else payload)
                                   for kind, payload in inner)
    return b"".join(_bmff_box(kind, new_meta if kind == b"meta" else payload) for kind, payload in top)


@heif
def test_a_heic_s_hdr_gain_map_and_mattes_are_said_not_to_be_kept(tmp_path):
    """An iPhone photo carries an HDR gain map (and a portrait one its mattes and depth)
    as auxiliary images beside its picture; the copy holds the restored picture alone,
    and now says so instead of dropping them without a word."""
    import pillow_heif

    from restore_core.io.images import heif_auxiliaries_lost

    pillow_heif.register_heif_opener()
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    gain_map = Image.new("RGB", (32, 24), (128, 128, 128))
    buffer = io.BytesIO()
    photo.save(buffer, format="HEIF", save_all=True, append_images=[gain_map], quality=90)
    (tmp_path / "IMG_0001.HEIC").write_bytes(_with_auxiliary_image(buffer.getvalue(), b"urn:com:apple:photo:2020:aux:hdrgainmap"))
    assert pillow_heif.open_heif(tmp_path / "IMG_0001.HEIC").info["aux"] == {"urn:com:apple:photo:2020:aux:hdrgainmap": [2]}
    loaded = read_image(tmp_path / "IMG_0001.HEIC")
    assert loaded.rgb.shape == (48, 64, 3)  # the picture, not the gain map
    assert loaded.read_note == "its HDR gain map not kept; the copy shows as SDR"
    portrait = {"aux": {"urn:com:apple:photo:2020:aux:hdrgainmap": [2], "urn:com:apple:photo:2019:aux:semanticskinmatte": [3],
                        "urn:com:apple:photo:2018:aux:portraiteffectsmatte": [4], "urn:example:other": [5]}, "depth_images": [object()]}
    assert heif_auxiliaries_lost(portrait) == ("its HDR gain map, 2 portrait mattes, 1 auxiliary image and depth map not kept; "
                                               "the copy shows as SDR")
    assert read_image(tmp_path / "IMG_0001.HEIC").read_note == loaded.read_note
    photo.save(tmp_path / "plain.heic", format="HEIF", quality=90)
    assert read_image(tmp_path / "plain.heic").read_note is None


@heif
def test_a_10_bit_heic_keeps_its_depth_on_the_16_bit_scale(tmp_path):
    """pillow-heif's default turns 10-bit HEICs (iPhone HDR) into 8 bits; they are read at
    their depth, on the 16-bit scale (a 10-bit white is 1.0, not 65472 / 65535)."""
    import pillow_heif

    levels = np.linspace(0, 1023, 24 * 32).astype(np.uint16).reshape(24, 32)
    samples = np.repeat(levels[..., None], 3, axis=2)  # grey: no chroma to subsample
    samples[0, 0] = 1023
    heif = pillow_heif.from_bytes(mode="RGB;16", size=(32, 24), data=(samples << 6).tobytes())
    heif.save(tmp_path / "hdr.heic", quality=-1)
    loaded = read_image(tmp_path / "hdr.heic")
    assert loaded.bit_depth == 16 and loaded.rgb[0, 0].tolist() == [1.0, 1.0, 1.0]
    assert np.abs(loaded.rgb - samples / 1023).mean() < 2 / 1023
    write_image(tmp_path / "hdr.png", loaded.rgb, loaded)
    assert cv2.imread(str(tmp_path / "hdr.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # the depth travels to PNG


@heif
def test_a_cameras_10_bit_hif_is_read_and_written_back_at_10_bits(tmp_path):
    """Canon, Sony and Fujifilm cameras write 10-bit HEIFs named .HIF: a folder of them
    held "no images" (the name was not known), and a HEIC copy of a 10-bit picture was
    written at 8 bits (a gradient of 256 10-bit levels came back in 64 steps)."""
    import pillow_heif

    from restore_core.engine.inputs import collect_inputs

    levels = np.linspace(0, 255, 24 * 32).round().astype(np.uint16).reshape(24, 32) + 400  # 256 levels mid-range
    samples = np.repeat(levels[..., None], 3, axis=2)
    exif = Image.Exif()
    exif[271] = "Camera maker"
    heif = pillow_heif.from_bytes(mode="RGB;16", size=(32, 24), data=(samples << 6).tobytes())
    heif.save(tmp_path / "DSC00001.HIF", quality=-1, exif=exif.tobytes())
    assert [job.source.name for job in collect_inputs(str(tmp_path))] == ["DSC00001.HIF"]
    loaded = read_image(tmp_path / "DSC00001.HIF")
    assert loaded.bit_depth == 16 and lost_on_write(loaded, ".HIF") is None
    write_image(tmp_path / "copy.HIF", loaded.rgb, loaded, 100)
    copy = pillow_heif.open_heif(tmp_path / "copy.HIF", convert_hdr_to_8bit=False)
    assert copy.info["bit_depth"] == 10
    back = np.asarray(copy)[..., 0] >> 6
    assert len(np.unique(back)) > 200 and np.abs(back.astype(int) - levels).mean() < 1.5  # 10-bit steps, not 8-bit ones
    reread = read_image(tmp_path / "copy.HIF")
    assert reread.exif is not None and Image.open(tmp_path / "copy.HIF").getexif()[271] == "Camera maker"
    png = dataclasses.replace(loaded, source_format="png")  # a 16-bit PNG's copy loses 6 bits, and says so
    assert lost_on_write(png, ".heic") == "16-bit samples written as 10-bit heic (png and tif keep 16 bits)"


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_exif_kept_in_16_bit_and_float_tiffs(tmp_path, rng, dtype):
    """OpenCV writes 16-bit and float TIFFs without metadata: their make, model, dates, the
    EXIF sub-IFD (exposure, time taken) and GPS were lost on the way through restore. They
    are added to the written file's IFD beside the profile; pixels untouched."""
    from restore_core.io.containers import add_tiff_metadata

    exif = Image.Exif()
    exif[271], exif[272], exif[306] = "Maker", "Model X", "2026:12:05 10:00:00"
    exif[0x8769] = {0x829A: 0.004, 0x9003: "2026:12:05 09:59:58"}  # exposure time, time taken
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 30.0)}  # GPS latitude
    icc = b"fake-icc-profile" * 8 + b"x"
    array = (rng.integers(0, 65536, (9, 13, 3), dtype=np.uint16) if dtype == np.uint16 else rng.random((9, 13, 3)).astype(np.float32))
    ok, buffer = cv2.imencode(".tif", array)
    src = tmp_path / "a.tif"
    src.write_bytes(add_tiff_metadata(buffer.tobytes(), icc, exif.tobytes()))
    loaded = read_image(src)
    dst = tmp_path / "b.tif"
    write_image(dst, loaded.rgb, loaded)
    written = Image.Exif()
    written.load(dst.read_bytes())
    assert (written[271], written[272], written[306]) == ("Maker", "Model X", "2026:12:05 10:00:00")
    assert float(written.get_ifd(0x8769)[0x829A]) == 0.004 and written.get_ifd(0x8769)[0x9003] == "2026:12:05 09:59:58"
    assert written.get_ifd(0x8825)[1] == "N" and tuple(map(float, written.get_ifd(0x8825)[2])) == (52.0, 22.0, 30.0)
    assert written[256] == 13 and written[258] in (16, 32, (16, 16, 16), (32, 32, 32))  # the image's own layout tags
    assert read_image(dst).icc_profile == icc
    np.testing.assert_array_equal(cv2.imread(str(dst), cv2.IMREAD_UNCHANGED), array)


def test_an_encoder_failure_is_one_line_and_leaves_no_file(tmp_path):
    """OpenCV's failures came as three lines (its version, source file and line, the
    function); the cause alone is kept."""
    from restore_core.io.images import from_array

    image = from_array(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ImageError) as failed:
        write_image(tmp_path / "x.xyz", np.zeros((8, 8, 3), np.float32), image)
    assert str(failed.value) == f"{tmp_path / 'x.xyz'}: cannot encode: could not find encoder for the specified extension"
    assert list(tmp_path.iterdir()) == []


def test_a_device_or_pipe_is_written_through_not_replaced_by_a_file(tmp_path):
    """`restore benchmark --csv /dev/null`, run as root, renamed its temporary file over
    /dev/null, which became a plain file (everything sent there then piled up in it).
    A pipe (and /dev/stdout, /dev/null) is written through; a regular file is still
    replaced whole, by a rename."""
    import threading

    from restore_core.io.files import _written_in_place, atomic_write_bytes

    fifo = tmp_path / "report.csv"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    atomic_write_bytes(fifo, b"model,image\n")
    reader.join(timeout=30)
    assert received == [b"model,image\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert _written_in_place(Path("/dev/null")) and _written_in_place(Path("/dev/stdout"))
    plain = tmp_path / "plain.csv"
    plain.write_bytes(b"old")
    assert not _written_in_place(plain) and not _written_in_place(tmp_path / "new.csv")
    atomic_write_bytes(plain, b"new")
    assert plain.read_bytes() == b"new"


@pytest.mark.parametrize("name, shape, dtype", [("a.ppm", (17, 23, 3), np.uint8), ("a.ppm", (17, 23, 3), np.uint16),
                                                ("a.pgm", (17, 23), np.uint8), ("a.pgm", (17, 23), np.uint16),
                                                ("a.pnm", (17, 23, 3), np.uint16)])
def test_netpbm_round_trips_keep_depth_and_layout(tmp_path, rng, name, shape, dtype):
    """PPM (colour), PGM (grey) and PNM (either), 8 or 16 bits: read and written as they came."""
    array = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    loaded, back = _round_trip(tmp_path, array, name)
    assert loaded.layout == ("grey" if len(shape) == 2 else "rgb") and loaded.bit_depth == 8 * np.dtype(dtype).itemsize
    assert back.dtype == dtype and np.array_equal(back, array)


@pytest.mark.parametrize("maxval, samples, expected", [(4095, [0, 4095, 2048], [0, 65535, 32776]), (100, [0, 50, 100], [0, 128, 255])])
def test_a_netpbm_file_with_another_maxval_is_read_on_the_full_scale(tmp_path, maxval, samples, expected):
    """OpenCV keeps a PGM's samples on its own scale: a 12-bit scan's white (4095) came to
    the model as 6 % grey. Samples are scaled to the full 8- or 16-bit range on read."""
    dtype = ">u2" if maxval > 255 else "u1"
    (tmp_path / "scan.pgm").write_bytes(f"P5\n# scanner\n3 1\n{maxval}\n".encode() + np.array(samples, dtype).tobytes())
    loaded = read_image(tmp_path / "scan.pgm")
    full = 65535 if maxval > 255 else 255
    assert loaded.bit_depth == (16 if maxval > 255 else 8)
    np.testing.assert_allclose(loaded.rgb[0, :, 0], np.array(expected) / full, atol=0.5 / full)


def test_jpeg_under_its_other_names_is_read_and_written_as_jpeg(tmp_path, rng):
    """A browser on Windows saves photos as .jfif: it is a JPEG, and its copy is one too,
    under the same name and with the source's chroma subsampling."""
    array = rng.integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    for name in ("photo.jfif", "photo.jpe", "photo.jif"):
        Image.fromarray(array).save(tmp_path / name, format="JPEG", quality=90, subsampling=0)
        loaded = read_image(tmp_path / name)
        write_image(tmp_path / f"out_{name}", loaded.rgb, loaded)
        with Image.open(tmp_path / f"out_{name}") as written:
            assert written.format == "JPEG" and JpegImagePlugin.get_sampling(written) == 0


def test_pgm_holds_grey_images_and_ppm_colour_ones(tmp_path, rng):
    """A colour image's copy named .pgm is refused (no file written) rather than made grey;
    a grey image's copy named .ppm has its level in each channel; an alpha plane is dropped
    (Netpbm has none) and said."""
    colour = read_image(_written(tmp_path / "c.png", rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)))
    with pytest.raises(ImageError, match=r"c\.pgm: cannot encode: PGM holds grey images only: name a colour image's copy \.ppm or \.pnm$"):
        write_image(tmp_path / "c.pgm", colour.rgb, colour)
    assert not list(tmp_path.glob("c.pgm*"))
    grey_array = rng.integers(0, 256, (8, 9), dtype=np.uint8)
    grey = read_image(_written(tmp_path / "g.png", grey_array))
    write_image(tmp_path / "g.ppm", grey.rgb, grey)
    assert np.array_equal(cv2.imread(str(tmp_path / "g.ppm"), cv2.IMREAD_UNCHANGED), np.dstack([grey_array] * 3))
    rgba = read_image(_written(tmp_path / "a.png", rng.integers(0, 256, (8, 9, 4), dtype=np.uint8)))
    assert lost_on_write(rgba, ".ppm") == "alpha channel dropped: Netpbm has none (png, webp, tif or bmp keep it)"
    write_image(tmp_path / "a.ppm", rgba.rgb, rgba)
    assert cv2.imread(str(tmp_path / "a.ppm"), cv2.IMREAD_UNCHANGED).shape == (8, 9, 3)


def _written(path: Path, array: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), array)
    return path


def test_netpbm_maxval_is_read_through_comments():
    from restore_core.io.containers import netpbm_maxval

    assert netpbm_maxval(b"P6\n# made by a scanner\n4 3 # size\n#\n1023\n" + bytes(72)) == 1023
    assert netpbm_maxval(b"P2 2 1 255 0 255") == 255
    assert netpbm_maxval(b"P4\n8 1\n\xff") == 1  # a bitmap: no maxval, one bit a sample
    assert netpbm_maxval(b"P5 4 3") is None  # cut short
    assert netpbm_maxval(b"P5 4 3 70000 ") is None  # not a Netpbm maxval
    assert netpbm_maxval(b"\x89PNG\r\n\x1a\n") is None


def test_a_bigtiff_is_sized_before_it_is_decoded(tmp_path, monkeypatch):
    """Neither Pillow nor the classic TIFF header reader opens a float BigTIFF: its size
    was checked only after decoding, whatever its size. It is refused from its directory."""
    import tifffile

    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((100, 120, 3), np.float32), bigtiff=True, photometric="rgb", metadata=None)
    assert read_image(path).size == (100, 120)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before its size was checked")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_decoding)
    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(ImageError, match=r"big.tif: image is 120x100 = 12,000 pixels, over the limit of 1,000"):
        read_image(path, max_pixels=1000)


@pytest.mark.skipif(".jp2" not in READ_AS_PNG_EXTENSIONS, reason="this OpenCV reads no JPEG 2000")
def test_jpeg_2000_scans_are_read_and_their_copies_are_png(tmp_path, rng, tiny_checkpoint):
    """JPEG 2000 (an archive's or a library's scans) was left out as a format restore
    cannot read; OpenCV reads it: colour, 16-bit grey codestreams (.j2k), and grey +
    alpha through Pillow (which OpenCV refuses). The copies are PNGs of the same depth."""
    from test_cli import restore

    colour = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    deep_grey = rng.integers(0, 65536, (24, 32), dtype=np.uint16)
    grey_alpha = rng.integers(0, 256, (24, 32, 2), dtype=np.uint8)
    src = tmp_path / "scans"
    src.mkdir()
    Image.fromarray(colour).save(src / "page.jp2", irreversible=False)  # lossless
    Image.fromarray(deep_grey).save(src / "plate.j2k", irreversible=False, no_jp2=True)
    Image.fromarray(grey_alpha, "LA").save(src / "stamp.jp2", irreversible=False)
    page, plate, stamp = (read_image(src / name) for name in ("page.jp2", "plate.j2k", "stamp.jp2"))
    assert page.layout == "rgb" and np.array_equal(np.round(page.rgb * 255).astype(np.uint8), colour)
    assert plate.layout == "grey" and plate.bit_depth == 16
    assert np.array_equal(np.round(plate.rgb[..., 0] * 65535).astype(np.uint16), deep_grey)
    assert stamp.layout == "grey+alpha" and np.array_equal(stamp.alpha, grey_alpha[..., 1])
    run = restore("denoise", str(src), str(tmp_path / "out"), "--model", str(tiny_checkpoint))
    assert run.returncode == 0 and "cannot read" not in run.stderr, run.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["page.png", "plate.png", "stamp.png"]
    assert cv2.imread(str(tmp_path / "out" / "plate.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
