"""Phone JPEGs with something after the picture (io.jpeg_trailers): a motion photo's
video kept in a JPEG copy, an Ultra HDR gain map's loss said and unannounced."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from restore_core.io.images import lost_on_write, read_image, write_image
from restore_core.io.jpeg_trailers import jpeg_image_length, read_trailer, xmp_without_trailer

MOTION_XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description xmlns:GCamera="http://ns.google.com/photos/1.0/camera/" '
              b'xmlns:Container="http://ns.google.com/photos/1.0/container/" xmlns:Item="http://ns.google.com/photos/1.0/container/item/" '
              b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4" GCamera:MotionPhoto="1" GCamera:MotionPhotoVersion="1" '
              b'GCamera:MotionPhotoPresentationTimestampUs="968000"><Container:Directory><rdf:Seq>'
              b'<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="image/jpeg" Item:Semantic="Primary" Item:Length="0" Item:Padding="0"/></rdf:li>'
              b'<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="video/mp4" Item:Semantic="MotionPhoto" Item:Length="%d" Item:Padding="0"/></rdf:li>'
              b'</rdf:Seq></Container:Directory></rdf:Description></rdf:RDF></x:xmpmeta>')


def _jpeg(rng, xmp: bytes | None = None, **options) -> bytes:
    buffer = io.BytesIO()
    extra = {"xmp": xmp} if xmp else {}
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, format="JPEG", **extra, **options)
    return buffer.getvalue()


def _video(rng, size: int = 3000) -> bytes:
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + rng.integers(0, 256, size, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"quality": 100, "subsampling": 0}])
def test_a_jpegs_own_length_is_found_through_its_scans(rng, options):
    data = _jpeg(rng, **options)
    assert jpeg_image_length(data) == len(data)
    assert jpeg_image_length(data + b"after the picture") == len(data)


def test_a_jpegs_length_with_restart_markers(rng):
    ok, encoded = cv2.imencode(".jpg", rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), [cv2.IMWRITE_JPEG_RST_INTERVAL, 1])
    data = encoded.tobytes()
    assert b"\xff\xd0" in data and jpeg_image_length(data + b"\xff\xd8trailer") == len(data)


def test_a_motion_photos_video_is_kept_in_a_jpeg_copy(tmp_path, rng):
    video = _video(rng)
    source = tmp_path / "PXL_20261207_MP.jpg"
    source.write_bytes(_jpeg(rng, MOTION_XMP % len(video)) + video)
    loaded = read_image(source)
    assert loaded.trailer == video and loaded.read_note is None
    write_image(tmp_path / "out.jpg", np.clip(loaded.rgb * 0.9, 0, 1), loaded)  # another picture, of another length
    written = (tmp_path / "out.jpg").read_bytes()
    assert written.endswith(video) and jpeg_image_length(written) == len(written) - len(video)
    assert lost_on_write(loaded, ".jpg") is None
    with Image.open(tmp_path / "out.jpg") as copy:
        assert b'GCamera:MotionPhoto="1"' in copy.info["xmp"]


def test_a_motion_photo_copied_as_png_says_its_video_is_not_kept_and_announces_none(tmp_path, rng):
    video = _video(rng)
    source = tmp_path / "motion.jpg"
    source.write_bytes(_jpeg(rng, MOTION_XMP % len(video)) + video)
    loaded = read_image(source)
    write_image(tmp_path / "out.png", loaded.rgb, loaded)
    assert lost_on_write(loaded, ".png") == "its motion photo video not kept: png cannot hold one (a jpg copy keeps it)"
    with Image.open(tmp_path / "out.png") as copy:
        xmp = copy.info.get("XML:com.adobe.xmp", "").encode()
    assert b'xmp:Rating="4"' in xmp and b"MotionPhoto" not in xmp and b"Container:Directory" not in xmp


def test_a_samsung_motion_photos_trailer_is_kept(tmp_path, rng):
    trailer = b"MotionPhoto_Data" + _video(rng) + b"\x00" * 8 + b"SEFH" + bytes(20) + b"SEFT"
    source = tmp_path / "20261207_123456.jpg"
    source.write_bytes(_jpeg(rng) + trailer)
    loaded = read_image(source)
    assert loaded.trailer == trailer
    write_image(tmp_path / "out.jpg", loaded.rgb, loaded)
    assert (tmp_path / "out.jpg").read_bytes().endswith(trailer)


def test_an_ultra_hdr_gain_map_is_said_lost_and_no_longer_announced(tmp_path, rng):
    gain_map = _jpeg(rng)
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:hdrgm="http://ns.adobe.com/hdr-gain-map/1.0/" hdrgm:Version="1.0"><Container:Directory>'
           b'<rdf:Seq><rdf:li><Container:Item Item:Semantic="GainMap" Item:Length="%d"/></rdf:li></rdf:Seq>'
           b'</Container:Directory></rdf:Description></rdf:RDF></x:xmpmeta>') % len(gain_map)
    source = tmp_path / "PXL_hdr.jpg"
    source.write_bytes(_jpeg(rng, xmp) + gain_map)
    loaded = read_image(source)
    assert loaded.trailer is None and loaded.read_note == "its HDR gain map (Ultra HDR; the copy shows as SDR) not kept"
    assert b"hdrgm" not in loaded.xmp.replace(b'xmlns:hdrgm="http://ns.adobe.com/hdr-gain-map/1.0/"', b"")
    assert b"Container:Directory" not in loaded.xmp
    write_image(tmp_path / "out.jpg", loaded.rgb, loaded)
    written = (tmp_path / "out.jpg").read_bytes()
    assert jpeg_image_length(written) == len(written)


def test_a_plain_jpeg_or_one_with_unannounced_bytes_after_it_has_no_trailer(rng):
    data = _jpeg(rng)
    assert read_trailer(data, None) is None
    assert read_trailer(data + _jpeg(rng), None) is None  # a camera's MPO preview: not content
    assert xmp_without_trailer(None) is None
