"""JPEG XL (io.jpeg_xl, io.images): the codestream header read bit by bit, pictures
turned by the codestream's orientation and never by their EXIF's, a lossless one's copy
lossless, what the reader or writer cannot keep said, and a broken file refused."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from test_cli import restore

from restore_core.io import jpeg_xl
from restore_core.io.images import SUPPORTED_EXTENSIONS, ImageError, decode_image, lost_on_write, read_image, write_image

needs_plugin = pytest.mark.skipif(".jxl" not in SUPPORTED_EXTENSIONS, reason="pillow-jxl-plugin is not installed (pip install 'restore[jxl]')")


class _BitWriter:
    """Bits least significant first, as the codestream holds them."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, value: int, count: int) -> None:
        self.bits += [(value >> bit) & 1 for bit in range(count)]

    def to_bytes(self) -> bytes:
        padded = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(sum(bit << i for i, bit in enumerate(padded[start:start + 8])) for start in range(0, len(padded), 8))


def _codestream(width: int, height: int, orientation: int = 1, animated: bool = False, bits_per_sample: int = 8,
                float_samples: bool = False, alpha_channels: int = 0, xyb: bool = True) -> bytes:
    """The start of a codestream: its signature, SizeHeader and ImageMetadata as
    ISO/IEC 18181-1 lays them out, written field by field."""
    bits = _BitWriter()
    bits.u(0, 1)  # not a small size
    bits.u(1, 2), bits.u(height - 1, 13)  # U32 selector 1: 13 bits
    bits.u(0, 3)  # no aspect ratio: the width follows
    bits.u(1, 2), bits.u(width - 1, 13)
    bits.u(0, 1)  # not all_default
    bits.u(1, 1)  # extra_fields
    bits.u(orientation - 1, 3)
    bits.u(0, 1), bits.u(0, 1)  # no intrinsic size, no preview
    bits.u(int(animated), 1)
    if animated:
        bits.u(0, 2), bits.u(0, 2), bits.u(2, 2), bits.u(0, 16), bits.u(0, 1)  # 100/1 ticks a second, loops Bits(16), no timecodes
    bits.u(int(float_samples), 1)
    if float_samples:
        bits.u(0 if bits_per_sample == 32 else 1, 2), bits.u(7, 4)  # 32 or 16 bits, 8 exponent bits
    else:
        bits.u(3, 2), bits.u(bits_per_sample - 1, 6)  # BitsOffset(6, 1)
    bits.u(1, 1)  # modular_16_bit_buffer_sufficient
    bits.u(alpha_channels, 2)  # selector 0: none, 1: one
    for _ in range(alpha_channels):
        bits.u(1, 1)  # a default alpha channel
    bits.u(int(xyb), 1)
    return b"\xff\x0a" + bits.to_bytes() + bytes(16)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def test_the_codestream_header_is_read_field_by_field():
    header = jpeg_xl.read_header(_codestream(4000, 3000, orientation=6, bits_per_sample=16, alpha_channels=1, xyb=False))
    assert header == jpeg_xl.Header(4000, 3000, 6, 16, False, False, False, False)
    assert jpeg_xl.is_lossless(header) and jpeg_xl.orientation_to_apply(header) == 1  # libjxl turns a native codestream itself
    animated = jpeg_xl.read_header(_codestream(64, 48, orientation=3, animated=True, float_samples=True, bits_per_sample=16))
    assert (animated.animated, animated.orientation, animated.float_samples, animated.bits_per_sample, animated.xyb_encoded) == (True, 3, True, 16, True)
    # An 8x8 all-default picture: small size (0 + 1) * 8, ratio 1 (square), all_default.
    small = _BitWriter()
    small.u(1, 1), small.u(0, 5), small.u(1, 3), small.u(1, 1)
    assert jpeg_xl.read_header(b"\xff\x0a" + small.to_bytes()) == jpeg_xl.Header(8, 8, 1, 8, False, False, True, False)
    with pytest.raises(ValueError, match="no JPEG XL codestream"):
        jpeg_xl.read_header(b"\x89PNG\r\n\x1a\n" + bytes(30))
    with pytest.raises(ValueError, match="cut short"):
        jpeg_xl.read_header(b"\xff\x0a\x00")


def test_a_recompressed_jpeg_in_a_container_is_turned_by_its_codestream_orientation():
    """A JPEG recompressed to JPEG XL: the codestream split over two ``jxlp`` boxes, its
    JPEG reconstruction data between them; the plugin hands back the JPEG unturned."""
    codestream = _codestream(640, 480, orientation=8, xyb=False)
    container = (jpeg_xl._CONTAINER_SIGNATURE + _box(b"ftyp", b"jxl \x00\x00\x00\x00jxl ")
                 + _box(b"jxlp", struct.pack(">I", 0) + codestream[:3]) + _box(b"jbrd", bytes(20))
                 + _box(b"jxlp", struct.pack(">I", 0x80000001) + codestream[3:]))
    assert jpeg_xl.looks_like_jxl(container) and jpeg_xl.looks_like_jxl(codestream)
    header = jpeg_xl.read_header(container)
    assert (header.width, header.height, header.orientation, header.jpeg_reconstruction) == (640, 480, 8, True)
    assert jpeg_xl.orientation_to_apply(header) == 8 and not jpeg_xl.is_lossless(header)  # its pixels were a lossy JPEG's


def test_what_reading_loses_of_the_depth_is_said():
    deep = jpeg_xl.Header(8, 8, 1, 16, False, False, False, False)
    assert jpeg_xl.depth_lost(deep, 16) is None  # grey: decoded at 16 bits
    assert jpeg_xl.depth_lost(deep, 8) == "its 16-bit samples read at 8 bits (the JPEG XL reader decodes colour no deeper)"
    assert "float samples read at 8 bits" in jpeg_xl.depth_lost(jpeg_xl.Header(8, 8, 1, 32, True, False, False, False), 8)


def test_without_the_plugin_a_jpeg_xl_says_how_to_get_it(tmp_path, monkeypatch):
    from restore_core.io import images

    monkeypatch.setattr(jpeg_xl, "AVAILABLE", False)
    monkeypatch.setitem(images.UNREADABLE_FORMATS, ".jxl", "JPEG XL")
    path = tmp_path / "IMG_0003.JXL"
    path.write_bytes(_codestream(32, 24))
    with pytest.raises(ImageError, match=r"JPEG XL images cannot be read here: convert .* first \(JPEG XL: pip install 'restore\[jxl\]' adds it\)"):
        read_image(path)


def _oriented_jpeg(tmp_path, orientation: int = 6):
    """A 60x40 JPEG, a white block in its stored top-left corner, EXIF orientation 6
    (turn 90 degrees clockwise to show): shown 40 wide, 60 high, the block top-right."""
    stored = np.full((40, 60, 3), 40, np.uint8)
    stored[:10, :20] = 255
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = orientation, "Phone maker"
    path = tmp_path / "stored.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    return path


def _block_corner(rgb: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(rgb[..., 0] > 0.7)
    return int(rows.min()), int(cols.max())


@needs_plugin
def test_a_jpeg_recompressed_to_jpeg_xl_is_shown_upright_once(tmp_path):
    """libjxl copies a JPEG's EXIF orientation into the codestream when it recompresses
    it; the plugin returns the original JPEG unturned, libjxl's own decoding turns it.
    Either way the picture is read as the JPEG is: turned once."""
    jpeg_path = _oriented_jpeg(tmp_path)
    jpeg_xl.ready()
    with Image.open(jpeg_path) as jpeg:
        jpeg.save(tmp_path / "recompressed.jxl", lossless_jpeg=True)
    data = (tmp_path / "recompressed.jxl").read_bytes()
    assert jpeg_xl.read_header(data).orientation == 6 and jpeg_xl.read_header(data).jpeg_reconstruction
    as_jpeg = read_image(jpeg_path)
    recompressed = decode_image(data, "recompressed.jxl")
    assert recompressed.rgb.shape == as_jpeg.rgb.shape == (60, 40, 3)
    assert np.abs(recompressed.rgb - as_jpeg.rgb).max() * 255 <= 1  # the same JPEG, decoded by Pillow instead of OpenCV
    assert _block_corner(recompressed.rgb) == (0, 39)  # top-right, as the EXIF said
    assert recompressed.encoder_options == {}  # a JPEG's pixels: its copy is lossy, at --quality
    exif = Image.Exif()
    exif.load(recompressed.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "Phone maker"
    # Without its JPEG reconstruction data, libjxl decodes the codestream and turns it.
    native = b"".join(_box(kind, payload) for kind, payload in jpeg_xl._boxes(data) if kind != b"jbrd")
    decoded = decode_image(native, "native.jxl")
    assert decoded.rgb.shape == (60, 40, 3) and _block_corner(decoded.rgb) == (0, 39)


@needs_plugin
def test_an_exif_orientation_beside_an_upright_codestream_is_ignored(tmp_path):
    """The format's rule: the codestream's orientation is the picture's; an EXIF that
    says otherwise (written by a tool, or edited) does not turn it, in libjxl's viewers
    or here."""
    jpeg_xl.ready()
    stored = np.full((40, 60, 3), 40, np.uint8)
    stored[:10, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "a.jxl", lossless=True, exif=exif.tobytes())
    assert jpeg_xl.read_header((tmp_path / "a.jxl").read_bytes()).orientation == 1
    loaded = read_image(tmp_path / "a.jxl")
    assert loaded.rgb.shape == (40, 60, 3) and np.array_equal(np.round(loaded.rgb * 255).astype(np.uint8), stored)
    assert loaded.encoder_options == {"lossless": True}


@needs_plugin
def test_a_lossless_jpeg_xl_with_alpha_is_copied_losslessly_its_alpha_bit_exact(tmp_path):
    jpeg_xl.ready()
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
    exif = Image.Exif()
    exif[0x010F] = "Scanner maker"
    Image.fromarray(rgba).save(tmp_path / "a.jxl", lossless=True, exif=exif.tobytes(), xmp=xmp)
    loaded = read_image(tmp_path / "a.jxl")
    assert loaded.layout == "rgba" and loaded.encoder_options == {"lossless": True} and loaded.xmp == xmp
    assert lost_on_write(loaded, ".jxl") is None
    write_image(tmp_path / "b.jxl", loaded.rgb, loaded)
    with Image.open(tmp_path / "b.jxl") as copy:
        pixels = np.asarray(copy)
        assert copy.mode == "RGBA" and copy.getexif()[0x010F] == "Scanner maker"
    assert np.array_equal(pixels, rgba)  # lossless: the restored colours (here, the read ones) and the alpha as they came


@needs_plugin
def test_a_lossy_copy_follows_quality_and_quality_100_is_lossless(tmp_path):
    jpeg_xl.ready()
    smooth = np.clip(np.indices((48, 64)).sum(0)[..., None] * [2, 3, 1], 0, 255).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "a.jxl", quality=90)
    loaded = read_image(tmp_path / "a.jxl")
    assert loaded.encoder_options == {} and not jpeg_xl.is_lossless(jpeg_xl.read_header((tmp_path / "a.jxl").read_bytes()))
    sizes = {}
    for quality in (50, 95, 100):
        write_image(tmp_path / f"q{quality}.jxl", loaded.rgb, loaded, quality)
        sizes[quality] = (tmp_path / f"q{quality}.jxl").stat().st_size
        again = read_image(tmp_path / f"q{quality}.jxl")
        error = np.abs(again.rgb - loaded.rgb).max() * 255
        assert error == 0 if quality == 100 else 0 < error < 40, (quality, error)
    assert sizes[50] < sizes[95] < sizes[100]


@needs_plugin
def test_sixteen_bit_grey_is_read_at_its_depth_and_its_jpeg_xl_copy_says_it_keeps_8(tmp_path):
    jpeg_xl.ready()
    grey = (np.arange(24 * 32).reshape(24, 32) * 83).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "a.jxl", lossless=True)
    loaded = read_image(tmp_path / "a.jxl")
    assert loaded.layout == "grey" and loaded.bit_depth == 16 and loaded.read_note is None
    assert np.array_equal(np.round(loaded.rgb[..., 0] * 65535).astype(np.uint16), grey)
    # libjxl labels 16-bit grey linear ("Gra_D65_Rel_Lin"); an 8-bit copy is labelled with sRGB's curve.
    assert lost_on_write(loaded, ".jxl") == ("its ICC profile not kept: the JPEG XL writer writes sRGB (png, jpg, tif and webp keep it); "
                                             "16-bit samples written as 8-bit jxl (png and tif keep 16 bits)")
    assert lost_on_write(loaded, ".png") is None


@needs_plugin
def test_a_profile_other_than_srgb_is_said_to_be_lost_in_a_jpeg_xl_copy(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    photo = read_image(_oriented_jpeg(tmp_path))
    assert jpeg_xl.keeps_colours(srgb) and not jpeg_xl.keeps_colours(lab) and not jpeg_xl.keeps_colours(b"not a profile")
    from dataclasses import replace

    assert lost_on_write(replace(photo, icc_profile=srgb), ".jxl") is None
    assert "ICC profile not kept" in lost_on_write(replace(photo, icc_profile=lab), ".jxl")
    assert lost_on_write(replace(photo, icc_profile=lab), ".png") is None


@needs_plugin
def test_an_animated_or_broken_jpeg_xl_is_refused_naming_the_file(tmp_path):
    (tmp_path / "loop.jxl").write_bytes(_codestream(64, 48, animated=True))
    with pytest.raises(ImageError, match=r"loop.jxl: is an animated JPEG XL; only still ones are read here"):
        read_image(tmp_path / "loop.jxl")
    (tmp_path / "huge.jxl").write_bytes(_codestream(8000, 8000))
    with pytest.raises(ImageError, match=r"huge.jxl: image is 8000x8000 = 64,000,000 pixels, over the limit of 1,000,000"):
        read_image(tmp_path / "huge.jxl", max_pixels=1_000_000)
    buffer = io.BytesIO()
    jpeg_xl.ready()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format="JXL", quality=90)
    (tmp_path / "cut.jxl").write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut.jxl: cannot decode image \(corrupt, truncated or unsupported JPEG XL\)"):
        read_image(tmp_path / "cut.jxl")


@needs_plugin
def test_the_cli_restores_a_folder_of_jpeg_xl_photos_and_refuses_a_broken_one(tmp_path, tiny_checkpoint):
    jpeg_xl.ready()
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / "a.jxl", quality=90)
    (folder / "b.jxl").write_bytes((folder / "a.jxl").read_bytes()[:40])
    result = restore("derain", str(folder), str(tmp_path / "out"), "--json", "--model", str(tiny_checkpoint))
    assert result.returncode == 1, result.stderr
    rows = {row["input"].rsplit("/", 1)[-1]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["a.jxl"]["status"] == "ok" and rows["b.jxl"]["status"] == "error" and "b.jxl" in result.stderr
    with Image.open(tmp_path / "out" / "a.jxl") as copy:
        assert copy.format == "JXL" and copy.size == (32, 24)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jxl"]  # nothing left for the broken one


@given(st.binary(max_size=64), st.booleans())
@settings(max_examples=300, deadline=None)
def test_any_bytes_after_the_signature_give_a_header_or_a_value_error(tail, in_container):
    data = b"\xff\x0a" + tail
    if in_container:
        data = jpeg_xl._CONTAINER_SIGNATURE + _box(b"jxlc", data)
    try:
        header = jpeg_xl.read_header(data)
    except ValueError:
        return
    assert header.width >= 1 and header.height >= 1 and 1 <= header.orientation <= 8


@needs_plugin
def test_brotli_compressed_exif_and_xmp_boxes_are_read(tmp_path, monkeypatch):
    """libjxl may keep a picture's EXIF and XMP in Brotli-compressed boxes (``brob``);
    the plugin reads an uncompressed Exif box alone, and the copy lost both without a word."""
    import sys

    jpeg_xl.ready()
    exif = Image.Exif()
    exif[0x010F], exif[0x0112] = "Camera maker", 3
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
    picture = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "a.jxl", lossless=True, exif=exif.tobytes(), xmp=xmp, compress_metadata=True)
    assert [bytes(payload[:4]) for kind, payload in jpeg_xl._boxes((tmp_path / "a.jxl").read_bytes()) if kind == b"brob"] == [b"Exif", b"xml "]
    loaded = read_image(tmp_path / "a.jxl")
    kept = Image.Exif()
    kept.load(loaded.exif)
    assert kept[0x010F] == "Camera maker" and kept[0x0112] == 1 and loaded.xmp == xmp and loaded.read_note is None
    assert loaded.rgb.shape == (24, 32, 3)  # the EXIF's orientation 3 turns nothing: the codestream's is the picture's
    monkeypatch.setitem(sys.modules, "brotli", None)  # not installed
    unread = read_image(tmp_path / "a.jxl")
    assert unread.exif is None and unread.read_note == "its EXIF and XMP not read: Brotli-compressed (pip install brotli)"
