"""Videos (io.video, engine.video, the CLI): frames restored one by one into a new video
that keeps the input's timing, colour tags and sound; nothing left behind on failure."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import SAMPLES, router_with_scripted_classifier
from test_cli import restore

av = pytest.importorskip("av")  # the optional restore[video] extra; the test extra installs it

from restore_core.engine.inputs import Job, collect_inputs, plan_outputs  # noqa: E402
from restore_core.checkpoint import load_checkpoint  # noqa: E402
from restore_core.engine.results import ImageResult  # noqa: E402
from restore_core.engine.runner import Restorer, RunOptions  # noqa: E402
from restore_core.engine.temporal import TemporalConfig  # noqa: E402
from restore_core.engine.video import ended_early, restore_video, settings_key  # noqa: E402
from restore_core.io.images import ImageError  # noqa: E402
from restore_core.io.video import PYAV_MISSING, VideoReader, encoder_available, quality_to_crf, side_data_of, upright  # noqa: E402
from restore_core.io.video_writer import VideoWriter  # noqa: E402
from restore_core.metrics import psnr  # noqa: E402

FPS = 12


def make_video(path: Path, frames: list[np.ndarray], audio: bool = True, rotation: int = 0, colorspace: int | None = None,
               color_range: int | None = None) -> Path:
    """An H.264 clip of ``frames`` (uint8 RGB) at CRF 4 (near lossless), with a 440 Hz AAC tone."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "4"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if colorspace is not None:
            video.codec_context.colorspace = colorspace
        if color_range is not None:
            video.codec_context.color_range = color_range
        if rotation:
            video.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=44100) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace=colorspace,
                                                                              dst_color_range=color_range)
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            encode_tone(container, sound, len(frames) / FPS, 1024)
    return path


def encode_tone(container, stream, seconds: float, frame_size: int) -> None:
    """A 440 Hz mono tone of ``seconds`` at 44.1 kHz into ``stream``, in chunks of
    ``frame_size`` samples (AAC takes 1024, MP2 1152), then flush it."""
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(44100 * seconds)) / 44100)).astype(np.float32)[None]
    for start in range(0, samples.shape[1] - frame_size + 1, frame_size):
        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + frame_size]), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 44100, start
        for packet in stream.encode(chunk):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def encode(container, stream, frames: list[np.ndarray], pix_fmt: str) -> None:
    """Encode uint8 RGB ``frames`` (frame i at time i / FPS) into ``stream`` and flush it."""
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
        frame.pts, frame.time_base = i, Fraction(1, FPS)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def copy_through_writer(reader: VideoReader, output: Path) -> VideoWriter:
    """Every frame of ``reader`` into ``output`` unchanged, in one part."""
    writer = VideoWriter(output, reader)
    for frame, pts in reader.frames():
        writer.write(frame, pts)
    writer.commit()
    return writer


def read_video(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """The frames of a video, and when each is shown (seconds)."""
    with VideoReader(path) as reader:
        decoded = list(reader.frames())
        time_base = reader.stream.time_base
    return [frame for frame, _ in decoded], [round(float(pts * time_base), 4) for _, pts in decoded]


def streams(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio_packets = sum(1 for p in container.demux(container.streams.audio) if p.size) if container.streams.audio else 0
        return {"codec": video.codec_context.name, "rate": video.average_rate, "colorspace": video.codec_context.colorspace,
                "color_range": video.codec_context.color_range, "audio": len(container.streams.audio), "audio_packets": audio_packets}


def moving_frames(rng: np.random.Generator, count: int = 6, height: int = 64, width: int = 96) -> list[np.ndarray]:
    """A smooth random picture panning across: compresses well, changes every frame."""
    base = cv2.GaussianBlur(rng.integers(0, 256, (height, 2 * width, 3), dtype=np.uint8), (0, 0), 3)
    return [np.ascontiguousarray(base[:, 4 * i : 4 * i + width]) for i in range(count)]


def test_copying_a_video_in_parts_keeps_frames_timing_colour_tags_and_sound(tmp_path, rng):
    """BT.709, limited-range tags as a camera writes them: the copy is converted and tagged
    the same way (a BT.601 conversion of a BT.709 clip reads about 30 dB, with a colour cast)."""
    source = make_video(tmp_path / "in.mp4", moving_frames(rng), colorspace=1, color_range=1)
    frames, stamps = read_video(source)
    for ext in (".mp4", ".mkv", ".avi"):
        output = tmp_path / f"copy{ext}"
        with VideoReader(source) as reader:
            writer = VideoWriter(output, reader)
            for i, (frame, pts) in enumerate(reader.frames()):
                writer.write(frame, pts)
                if i in (1, 3):
                    writer.checkpoint()  # three parts, joined on commit (B-frames and all)
            writer.commit()
        copied, copied_stamps = read_video(output)
        assert len(copied) == len(frames), ext
        assert min(psnr(a, b) for a, b in zip(frames, copied)) > 38, ext
        described = streams(output)
        assert described["rate"] == FPS and described["audio"] == 1, ext
        assert described["audio_packets"] == streams(source)["audio_packets"], ext
        if ext != ".avi":  # AVI stores neither timestamps nor colour tags
            assert described["colorspace"] == 1 and described["color_range"] == 1, ext
            # Frame times kept (Matroska may start them all a few ms later, after the sound's priming samples)
            # (and counts them in milliseconds)
            assert np.allclose(np.subtract(copied_stamps, copied_stamps[0]), np.subtract(stamps, stamps[0]), atol=0.0011), ext
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.avi", "copy.mkv", "copy.mp4", "in.mp4"]  # no temporary left


def test_a_rotated_phone_clip_is_restored_upright(tmp_path, rng):
    frames = moving_frames(rng, count=3)
    source = make_video(tmp_path / "portrait.mp4", frames, audio=False, rotation=-90)  # shown turned a quarter clockwise
    with VideoReader(source) as reader:
        assert (reader.info.width, reader.info.height, reader.info.rotation) == (64, 96, -90)
        shown = [frame for frame, _ in reader.frames()]
    assert all(psnr(np.rot90(original, -1), frame) > 38 for original, frame in zip(frames, shown))
    assert np.array_equal(upright(frames[0], 90), np.rot90(frames[0]))


def test_quality_maps_to_each_encoders_constant_quality():
    assert quality_to_crf(95, "libx264") == 18 and quality_to_crf(100, "libx264") == 16 and quality_to_crf(1, "libx264") == 51
    assert quality_to_crf(95, "libvpx-vp9") == 20 and quality_to_crf(95, "mpeg4") == 2


@pytest.mark.slow
def test_derain_a_rainy_clip_end_to_end(tmp_path):
    """The bundled rainy samples as a clip with sound: ``restore derain clip.mp4 out/``
    writes one video, every frame closer to the clean picture than the rainy one, the
    sound kept, one JSON line for the clip with its frame count."""
    rainy = cv2.cvtColor(cv2.imread(str(SAMPLES / "input" / "motorcycle.png")), cv2.COLOR_BGR2RGB)
    clean = cv2.cvtColor(cv2.imread(str(SAMPLES / "target" / "motorcycle.png")), cv2.COLOR_BGR2RGB)
    clip = make_video(tmp_path / "clip.mp4", [rainy, np.ascontiguousarray(rainy[:, ::-1]), rainy])
    targets = [clean, clean[:, ::-1], clean]
    run = restore("derain", str(clip), str(tmp_path / "out"), "--json", "--batch-size", "2")
    assert run.returncode == 0, run.stderr
    line = json.loads(run.stdout)
    assert line["status"] == "ok" and line["frames"] == 3 and line["output"] == str(tmp_path / "out" / "clip.mp4")
    restored, _ = read_video(tmp_path / "out" / "clip.mp4")
    decoded_rainy, _ = read_video(clip)
    gains = [psnr(out, target) - psnr(before, target) for out, before, target in zip(restored, decoded_rainy, targets)]
    assert len(restored) == 3 and min(gains) > 1.0, gains
    assert streams(tmp_path / "out" / "clip.mp4")["audio"] == 1


def test_videos_are_restored_when_named_and_left_out_of_folders_with_a_warning(tmp_path, rng, tiny_checkpoint):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    make_video(photos / "live.mov", moving_frames(rng, count=2), audio=False)
    run = restore("derain", str(photos), str(tmp_path / "out"), "-m", str(tiny_checkpoint))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(tmp_path / "out" / "a.png")]
    assert "left out 1 video(s)" in run.stderr and "photos/*.mov" in run.stderr
    run = restore("derain", str(photos / "*"), str(tmp_path / "all"), "-m", str(tiny_checkpoint), "--ext", "mkv")
    assert run.returncode == 0, run.stderr
    assert sorted(run.stdout.split()) == [str(tmp_path / "all" / "a.png"), str(tmp_path / "all" / "live.mkv")]
    assert len(read_video(tmp_path / "all" / "live.mkv")[0]) == 2


def test_an_output_file_name_for_one_video(tmp_path, rng, tiny_checkpoint):
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=2), audio=False)
    run = restore("derain", str(clip), str(tmp_path / "clear.webm"), "-m", str(tiny_checkpoint))
    assert run.returncode == 0, run.stderr
    assert streams(tmp_path / "clear.webm")["codec"] == "vp9"


def test_a_damaged_video_is_an_error_naming_it_and_the_batch_goes_on(tmp_path, rng, tiny_checkpoint):
    good = make_video(tmp_path / "good.mp4", moving_frames(rng, count=2), audio=False)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(rng.integers(0, 256, 3000, dtype=np.uint8)))
    out = tmp_path / "out"
    run = restore("derain", "-", str(out), "-m", str(tiny_checkpoint), "--json", stdin=f"{damaged}\n{good}\n")
    assert run.returncode == 1
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["status"] for line in lines] == ["error", "ok"]
    assert "not a video FFmpeg can decode" in lines[0]["error"]
    assert f"{damaged}: cannot read" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good.mp4"]  # nothing for the damaged one, no temporary


def test_a_video_cut_short_is_restored_as_far_as_it_goes_with_a_note_naming_it(tmp_path, rng, tiny_checkpoint):
    """A download that stopped short: an MP4 whose index comes first opens, and decodes
    without an error up to the cut. The restored part is written, and stderr and the JSON
    line say that the video ended before the frames its container counts; the whole file
    gets no such note. A Matroska file cut before its first frame is an error naming it
    (it was a traceback: after the first look the file, its index lost, could not seek)."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "4"})
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        encode(container, video, moving_frames(rng, count=24), "yuv420p")
    cut, stub = tmp_path / "cut.mp4", tmp_path / "stub.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 4 // 5])
    matroska = make_video(tmp_path / "whole.mkv", moving_frames(rng, count=24), audio=False)
    stub.write_bytes(matroska.read_bytes()[: matroska.stat().st_size * 3 // 10])
    out = tmp_path / "out"
    run = restore("derain", "-", str(out), "-m", str(tiny_checkpoint), "--json", stdin=f"{cut}\n{stub}\n{whole}\n")
    assert run.returncode == 1, run.stderr
    lines = {Path(line["input"]).name: line for line in map(json.loads, run.stdout.splitlines())}
    assert lines["stub.mkv"]["status"] == "error" and f"{stub}: cannot read: the video holds no frames" in run.stderr
    assert sorted(path.name for path in out.iterdir()) == ["cut.mp4", "whole.mp4"]
    assert 0 < lines["cut.mp4"]["frames"] < 20 and lines["whole.mp4"]["frames"] == 24
    assert len(read_video(out / "cut.mp4")[0]) == lines["cut.mp4"]["frames"]
    assert "of the 24 frames its container counts: the file is truncated or damaged" in lines["cut.mp4"]["note"]
    assert "note" not in lines["whole.mp4"]
    assert f"{cut}: the video ended after {lines['cut.mp4']['frames']} of the 24 frames" in run.stderr


def test_a_damaged_packet_part_way_loses_its_frame_not_the_video(tmp_path, rng, tiny_checkpoint):
    """One packet the decoder refuses (its NAL length garbled) is skipped, as FFmpeg's own
    command skips it: the other 23 frames and the sound are written, with a note. The
    whole video failed before, and its resumed run met the same packet again."""
    clip = make_video(tmp_path / "dashcam.mp4", moving_frames(rng, count=24))
    with av.open(str(clip)) as container:
        packets = [packet.pos for packet in container.demux(container.streams.video[0]) if packet.size]
    data = bytearray(clip.read_bytes())
    data[packets[12] : packets[12] + 4] = b"\xff" * 4
    clip.write_bytes(bytes(data))
    result = restore_video(Job(clip, Path("dashcam.mp4"), tmp_path / "out.mp4"), Counting(tiny_checkpoint))
    assert result.status == "ok", result.error
    assert result.frames == 23 and result.note.startswith("1 damaged packet(s) of the video skipped")
    assert len(read_video(tmp_path / "out.mp4")[0]) == 23 and streams(tmp_path / "out.mp4")["audio_packets"] > 0


def test_a_phone_clips_date_place_and_title_are_kept(tmp_path, rng, tiny_checkpoint):
    """creation_time (photo libraries sort by it), location (its GPS), a title and the
    sound's language were lost: a clip restored today sorted as taken today. They travel
    into MP4 and Matroska; the muxing details (brands, encoder) are the new file's own."""
    clip = tmp_path / "IMG_0001.mp4"
    with av.open(str(clip), "w") as container:
        container.metadata.update({"creation_time": "2024-05-01T10:20:30.000000Z", "location": "+48.8584+002.2945/", "title": "Eiffel"})
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        sound = container.add_stream("aac", rate=44100)
        sound.layout, sound.metadata["language"] = "mono", "fra"
        encode(container, video, moving_frames(rng, count=3), "yuv420p")
        encode_tone(container, sound, 3 / FPS, 1024)
    for suffix in (".mp4", ".mkv"):
        output = tmp_path / f"out{suffix}"
        assert restore_video(Job(clip, Path(clip.name), output), Counting(tiny_checkpoint)).status == "ok"
        with av.open(str(output)) as restored:
            tags = {key.lower(): value for key, value in restored.metadata.items()}
            assert restored.streams.audio[0].metadata["language"] == "fra", suffix  # a sound track's language too
        assert tags["creation_time"] == "2024-05-01T10:20:30.000000Z" and tags["location"] == "+48.8584+002.2945/", suffix
        assert tags["title"] == "Eiffel" and "Lavf" in tags["encoder"], suffix


def _film_with_subtitles(tmp_path: Path, rng, srt_text: str) -> Path:
    """tmp_path/film.mkv: 12 frames and a SubRip track of ``srt_text`` in English."""
    srt, clip = tmp_path / "film.srt", tmp_path / "film.mkv"
    srt.write_text(srt_text)
    with av.open(str(srt)) as captions, av.open(str(clip), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        track = container.add_stream_from_template(captions.streams.subtitles[0])
        track.metadata["language"] = "eng"
        for packet in [p for p in captions.demux(captions.streams.subtitles[0]) if p.size]:
            packet.stream = track
            container.mux(packet)
        encode(container, video, moving_frames(rng, count=12), "yuv420p")
    return clip


def test_subtitles_are_kept_where_the_container_holds_them(tmp_path, rng, tiny_checkpoint):
    """A film's subtitle track (here SubRip, with its language) was dropped with the
    cover art; it is copied packet by packet into Matroska, cut and moved with a span
    like the sound, and said where the container cannot hold it (SubRip in MP4)."""
    clip = _film_with_subtitles(tmp_path, rng, "1\n00:00:00,000 --> 00:00:00,300\nHello\n\n2\n00:00:00,400 --> 00:00:00,700\nWorld\n")

    def captions_of(path: Path) -> list[tuple[bytes, int]]:
        with av.open(str(path)) as restored:
            assert restored.streams.subtitles[0].metadata["language"] == "eng"
            return [(bytes(p), p.pts) for p in restored.demux(restored.streams.subtitles[0]) if p.size]

    whole = restore_video(Job(clip, Path(clip.name), tmp_path / "out.mkv"), Counting(tiny_checkpoint))
    assert whole.status == "ok" and whole.note is None
    assert captions_of(tmp_path / "out.mkv") == [(b"Hello", 0), (b"World", 400)]
    span = restore_video(Job(clip, Path(clip.name), tmp_path / "span.mkv"), Counting(tiny_checkpoint), RunOptions(video_start=0.35))
    assert span.status == "ok" and captions_of(tmp_path / "span.mkv") == [(b"World", 50)]  # moved with the span
    # MP4 holds text subtitles as mov_text only: the SubRip track is re-encoded, italics kept
    # (it was dropped with "subrip subtitles cannot go into .mp4; not kept (use .mkv)")
    clip = _film_with_subtitles(tmp_path, rng, "1\n00:00:00,000 --> 00:00:00,300\nHello <i>there</i>\n\n2\n00:00:00,400 --> 00:00:00,700\nWorld\n")
    in_mp4 = restore_video(Job(clip, Path(clip.name), tmp_path / "out.mp4"), Counting(tiny_checkpoint))
    assert in_mp4.status == "ok" and in_mp4.note is None
    with av.open(str(tmp_path / "out.mp4")) as restored:
        stream = restored.streams.subtitles[0]
        assert stream.codec_context.name == "mov_text" and stream.metadata["language"] == "eng"
        events = [(stream.codec_context.decode2(p), p.pts * p.time_base) for p in restored.demux(stream) if p.size > 2]  # 2 bytes: the muxer's gap
        assert [(e.rects[0].ass.split(b",,")[-1], float(shown)) for e, shown in events] == [(b"Hello {\\i1}there", 0.0), (b"World", 0.4)]
    # back from mov_text into Matroska, as SubRip
    again = restore_video(Job(tmp_path / "out.mp4", Path("out.mp4"), tmp_path / "again.mkv"), Counting(tiny_checkpoint))
    assert again.status == "ok" and again.note is None
    with av.open(str(tmp_path / "again.mkv")) as restored:
        stream = restored.streams.subtitles[0]
        assert stream.codec_context.name in ("subrip", "srt")  # Matroska's S_TEXT/UTF8, named either way by FFmpeg
        assert [bytes(p) for p in restored.demux(stream) if p.size] == [b"Hello <i>there</i>", b"World"]
    # a container without a text subtitle codec still says so
    in_avi = restore_video(Job(clip, Path(clip.name), tmp_path / "out.avi"), Counting(tiny_checkpoint))
    assert in_avi.status == "ok" and "subtitles cannot go into .avi; not kept (use .mkv)" in in_avi.note


def test_a_short_video_is_told_with_a_margin_for_edit_lists():
    """Two frames, or a fiftieth of a long video, may be hidden by an MP4's edit list."""
    assert ended_early(98, 100) is None and "after 97 of the 100 frames" in ended_early(97, 100)
    assert ended_early(980, 1000) is None and ended_early(979, 1000) is not None
    assert ended_early(0, 0) is None  # a container that counts nothing


class Counting(Restorer):
    """The tiny model, counting the frames it restores; ``fail_on`` makes that call
    raise ``failure`` (a model running out of memory, Ctrl-C)."""

    def __init__(self, checkpoint: Path, fail_on: int | None = None, failure: BaseException | None = None, strength: float = 1.0) -> None:
        super().__init__(load_checkpoint(checkpoint), torch.device("cpu"), "fp32", strength=strength)
        self.calls, self.frames, self.fail_on, self.failure = 0, 0, fail_on, failure

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_on:
            raise self.failure
        self.frames += batch.shape[0]
        return super().__call__(batch)


EVERY_BATCH = RunOptions(batch_size=2, video_checkpoint_seconds=0)  # frames kept after every batch


def test_a_model_failing_half_way_keeps_its_frames_and_the_same_call_continues(tmp_path, rng, tiny_checkpoint):
    frames = moving_frames(rng, count=6)
    clip = make_video(tmp_path / "clip.mp4", frames)
    job = Job(clip, Path("clip.mp4"), tmp_path / "out" / "clip.mp4")
    failing = Counting(tiny_checkpoint, fail_on=3, failure=RuntimeError("CUDA out of memory (simulated)"))
    result = restore_video(job, failing, EVERY_BATCH)
    assert result.status == "error" and result.output is None and not job.output.exists()
    assert result.error == ("model failed at frame 5: CUDA out of memory (simulated); 4 restored frame(s) kept: "
                            "the same command continues from there")
    work = tmp_path / "out" / ".clip.mp4.restore-parts"
    assert sorted(p.name for p in work.iterdir()) == ["lock", "part-00000.nut", "part-00001.nut", "progress.json"]

    again = Counting(tiny_checkpoint)
    result = restore_video(job, again, EVERY_BATCH)
    assert result.status == "ok" and result.frames == 6 and again.frames == 2  # only the last two restored
    assert result.note == "resumed after 4 frame(s) restored by an earlier run"
    assert list((tmp_path / "out").iterdir()) == [job.output]  # the work folder is gone
    continued, stamps = read_video(job.output)
    straight = tmp_path / "straight.mp4"
    assert restore_video(Job(clip, Path("clip.mp4"), straight), Counting(tiny_checkpoint), EVERY_BATCH).status == "ok"
    in_one_go, straight_stamps = read_video(straight)
    assert len(continued) == 6 and stamps == straight_stamps
    assert np.allclose(stamps, read_video(clip)[1], atol=0.0011)  # the MP4 muxer may move a frame by under a millisecond
    assert min(psnr(a, b) for a, b in zip(continued, in_one_go)) > 40  # the same frames (encoded in other parts)
    assert streams(job.output)["audio_packets"] == streams(clip)["audio_packets"]


def test_an_interrupted_video_keeps_its_frames_and_other_settings_start_over(tmp_path, rng, tiny_checkpoint):
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=6), audio=False)
    job = Job(clip, Path("clip.mp4"), tmp_path / "out" / "clip.mp4")
    with pytest.raises(KeyboardInterrupt):
        restore_video(job, Counting(tiny_checkpoint, fail_on=2, failure=KeyboardInterrupt()), EVERY_BATCH)
    assert (tmp_path / "out" / ".clip.mp4.restore-parts" / "part-00000.nut").is_file() and not job.output.exists()
    other = Counting(tiny_checkpoint, strength=0.5)
    result = restore_video(job, other, EVERY_BATCH)
    assert result.status == "ok" and other.frames == 6
    assert result.note == "an unfinished earlier run with another input or settings was discarded"


def test_two_runs_cannot_write_one_video_at_once(tmp_path, rng):
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=1), audio=False)
    with VideoReader(clip) as reader:
        first = VideoWriter(tmp_path / "out.mp4", reader)
        with pytest.raises(ImageError, match="another restore is writing this video now"):
            VideoWriter(tmp_path / "out.mp4", reader)
        first.abort()
        VideoWriter(tmp_path / "out.mp4", reader).abort()  # free again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_without_pyav_a_video_is_an_error_saying_how_to_add_it(tmp_path, rng, monkeypatch):
    import restore_core.engine.video as engine_video

    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=1), audio=False)
    monkeypatch.setattr(engine_video, "pyav_available", lambda: False)
    result = restore_video(Job(clip, Path("clip.mp4"), tmp_path / "out" / "clip.mp4"), None)
    assert (result.status, result.error) == ("error", PYAV_MISSING)
    assert "pip install" in PYAV_MISSING and not (tmp_path / "out").exists()


def test_ext_changes_the_format_of_its_own_kind_only():
    jobs = [Job(Path("a.png"), Path("a.png")), Job(Path("b.MP4"), Path("b.MP4"))]
    assert [j.output.name for j in plan_outputs(jobs, Path("o"), ext=".jpg")] == ["a.jpg", "b.MP4"]
    assert [j.output.name for j in plan_outputs(jobs, Path("o"), ext=".mkv")] == ["a.png", "b.mkv"]


def test_a_pattern_finds_videos_and_a_folder_of_only_videos_says_how_to_name_them(tmp_path, rng):
    make_video(tmp_path / "clip.mp4", moving_frames(rng, count=1), audio=False)
    assert [job.source.name for job in collect_inputs(str(tmp_path / "*.mp4"))] == ["clip.mp4"]
    with pytest.raises(ValueError, match=r"holds 1 video\(s\): name them"):
        collect_inputs(str(tmp_path))


def test_restore_auto_picks_one_model_for_a_whole_clip(tmp_path, rng, monkeypatch):
    """A classifier that would send frames to different models frame by frame: the clip
    goes to the model its first frames choose on average, all of it."""
    # frame by frame: noise, rain, noise, rain
    router = router_with_scripted_classifier(monkeypatch, [("noise", 0.6), ("rain", 0.9), ("noise", 0.6), ("rain", 0.9)])
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=4, height=48, width=48), audio=False)
    result = restore_video(Job(clip, Path("clip.mp4"), tmp_path / "clip-out.mp4"), router)
    assert result.status == "ok" and result.frames == 4
    assert result.model == "taylor-derain"  # rain 0.9 twice against noise 0.6 twice
    assert result.degradation["rain"] == pytest.approx(0.455, abs=1e-4)


def test_the_python_interface_restores_a_video_file(tmp_path, rng, tiny_checkpoint):
    import restore_core

    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=3), audio=False)
    restorer = restore_core.load(tiny_checkpoint, device="cpu")
    result = restorer.restore_file(clip, tmp_path / "clip.mkv")
    assert (result.status, result.frames) == ("ok", 3) and len(read_video(tmp_path / "clip.mkv")[0]) == 3
    with pytest.raises(ValueError, match="unsupported output format for clip.mp4"):
        restorer.restore_file(clip, tmp_path / "clip.png")
    with pytest.raises(FileExistsError):
        restorer.restore_file(clip, tmp_path / "clip.mkv")
    smoothed = restorer.restore_file(clip, tmp_path / "smooth.mkv", temporal=1, temporal_strength=2.0)
    assert smoothed.frames == 3 and len(read_video(tmp_path / "smooth.mkv")[0]) == 3
    with pytest.raises(ValueError, match="temporal radius"):
        restorer.restore_file(clip, tmp_path / "bad.mkv", temporal=-1)
    assert [r.frames for r in restorer.restore_files([clip], tmp_path / "folder", temporal=2)] == [3]
    [frames] = restorer.restore_files(clip, tmp_path / "frames", frames="png")
    assert frames.output == tmp_path / "frames" / "clip" and len(list(frames.output.glob("*.png"))) == 3
    with pytest.raises(ValueError, match="not an image format"):
        restorer.restore_files(clip, tmp_path / "frames", frames="mkv")


def test_after_a_full_disk_the_videos_and_stacks_left_are_reported_not_restored(tmp_path, rng, monkeypatch):
    import tifffile

    import restore_core.engine.batch as engine_batch

    def full_disk(jobs, restorer, options):
        for job in jobs:
            yield ImageResult(job.source, None, "error", error="cannot write: No space left on device", stops_batch=True)

    monkeypatch.setattr(engine_batch, "restore_stream", full_disk)
    monkeypatch.setattr(engine_batch, "restore_video", lambda *args: pytest.fail("a video was restored after the disk filled"))
    monkeypatch.setattr(engine_batch, "restore_paged", lambda *args: pytest.fail("a stack was restored after the disk filled"))
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=1), audio=False)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((2, 8, 8), np.uint8), photometric="minisblack", metadata=None)
    jobs = [Job(clip, Path("clip.mp4"), tmp_path / "out" / "clip.mp4"), Job(tmp_path / "a.png", Path("a.png"), tmp_path / "out" / "a.png"),
            Job(stack, Path("stack.tif"), tmp_path / "out" / "stack.tif")]
    results = list(engine_batch.restore_jobs(jobs, None))
    assert [(r.input.name, r.abandoned) for r in results] == [("a.png", False), ("stack.tif", True), ("clip.mp4", True)]
    assert "No space left on device" in results[1].error and "No space left on device" in results[2].error


def test_cover_art_is_not_taken_for_the_video_and_its_loss_is_said(tmp_path):
    path = tmp_path / "with-cover.mp4"
    with av.open(str(path), "w") as container:
        art = container.add_stream("mjpeg", rate=1)
        art.width, art.height, art.pix_fmt = 32, 32, "yuvj420p"
        art.disposition = av.stream.Disposition.attached_pic
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        encode(container, art, [np.full((32, 32, 3), 200, np.uint8)], "yuvj420p")
        encode(container, video, [np.full((48, 64, 3), 60 * i, np.uint8) for i in range(3)], "yuv420p")
    with VideoReader(path) as reader:
        assert (reader.info.width, reader.info.height, reader.info.other_streams) == (64, 48, 1)
        writer = copy_through_writer(reader, tmp_path / "out.mp4")
    assert writer.notes == ["1 stream(s) of cover art or data not kept"]
    assert len(read_video(tmp_path / "out.mp4")[0]) == 3


def test_odd_frame_sizes_keep_full_colour_and_avi_refuses_them_leaving_nothing(tmp_path, rng):
    frames = [rng.integers(0, 256, (21, 33, 3), dtype=np.uint8) for _ in range(2)]
    source = tmp_path / "odd.mkv"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 33, 21, "yuv444p"
        encode(container, stream, frames, "yuv444p")
    with VideoReader(source) as reader:
        copy_through_writer(reader, tmp_path / "odd.mp4")
        with pytest.raises(ImageError, match="AVI .* needs even frame sizes, not 33x21"):
            VideoWriter(tmp_path / "odd.avi", reader)
    with VideoReader(tmp_path / "odd.mp4") as copied:
        assert (copied.info.width, copied.info.height, copied.info.pixel_format) == (33, 21, "yuv444p")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mkv", "odd.mp4"]


@pytest.mark.parametrize("pixel_format, written", [("bgr0", "yuv444p"), ("yuv422p", "yuv420p"), ("bgra", "yuv444p")])
def test_rgb_videos_of_any_channel_order_keep_full_colour(tmp_path, rng, pixel_format, written):
    """FFV1's RGB is bgr0, which a list of 4:4:4 names missed: its colour was halved to 4:2:0.
    An alpha channel, which restore does not keep, used to go without a word."""
    frames = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(2)]
    source = tmp_path / "master.mkv"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 32, 24, pixel_format
        encode(container, stream, frames, pixel_format)
    with VideoReader(source) as reader:
        assert reader.info.pixel_format == pixel_format
        writer = copy_through_writer(reader, tmp_path / "out.mkv")
    with VideoReader(tmp_path / "out.mkv") as copied:
        assert copied.info.pixel_format == written
    assert writer.notes == (["bgra video: its alpha channel is not kept (frames are restored as colour alone)"]
                            if pixel_format == "bgra" else [])


def test_a_video_named_near_the_file_systems_limit_is_written(tmp_path, rng):
    """Its hidden work folder's name added 14 bytes to a valid 245-byte name: the write
    failed, and the clean-up after it ended in a traceback."""
    clip = make_video(tmp_path / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2)], audio=False)
    output = tmp_path / "out" / ("v" * 241 + ".mp4")
    with VideoReader(clip) as reader:
        copy_through_writer(reader, output)
    assert len(read_video(output)[0]) == 2 and sorted(p.name for p in output.parent.iterdir()) == [output.name]


def test_a_stop_keeps_every_frame_restored_before_it_not_only_the_last_checkpoint(tmp_path, rng, tiny_checkpoint):
    """No periodic checkpoint at all: Ctrl-C at the third batch still keeps the four frames
    of the first two (closed into a part as the run stops)."""
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=6), audio=False)
    job = Job(clip, Path("clip.mp4"), tmp_path / "out" / "clip.mp4")
    never = RunOptions(batch_size=2, video_checkpoint_seconds=float("inf"))
    with pytest.raises(KeyboardInterrupt):
        restore_video(job, Counting(tiny_checkpoint, fail_on=3, failure=KeyboardInterrupt()), never)
    progress = json.loads((tmp_path / "out" / ".clip.mp4.restore-parts" / "progress.json").read_text())
    assert progress["frames"] == 4 and progress["parts"] == ["part-00000.nut"]
    again = Counting(tiny_checkpoint)
    assert restore_video(job, again, never).frames == 6 and again.frames == 2


def test_without_a_terminal_a_long_video_says_its_progress_every_minute():
    from cli.console import ProgressLines

    now = [0.0]
    lines = ProgressLines("frames", every=60, clock=lambda: now[0])
    clip = Path("long.mp4")
    said = []
    for seconds, count in [(0, 100), (30, 130), (61, 161), (90, 190), (125, 225)]:
        now[0] = seconds
        said.append(lines(clip, count, 3700))
    assert said == [None, None, "long.mp4: 161 of 3700 frames, 1.00 frames/s, about 58 min left", None,
                    "long.mp4: 225 of 3700 frames, 1.00 frames/s, about 57 min left"]
    now[0] = 200
    assert lines(Path("other.mkv"), 0, 0) is None  # each video timed on its own; no total: no estimate
    now[0] = 270
    assert lines(Path("other.mkv"), 140, 0) == "other.mkv: 140 frames, 2.00 frames/s"


def test_times_are_read_as_seconds_or_clock_notation():
    from cli.restore_cmd import parse_time

    assert [parse_time(t, "--start") for t in ("90", "12.5", "1:30", "1:02:03.5", "0:05")] == [90, 12.5, 90, 3723.5, 5]
    for bad in ("", "1:", "a", "1:75", "-3", "1:2:3:4"):
        with pytest.raises(ValueError, match="--start"):
            parse_time(bad, "--start")


def test_a_span_of_a_video_is_restored_from_its_start_with_its_sound(tmp_path, rng, tiny_checkpoint):
    """Six frames at 12 per second (0, 0.083, ..., 0.417 s): --start 0.25 --duration 0.25
    restores the three shown from 0.25 s, as the whole run does, starting the output at 0."""
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=6))
    whole = Job(clip, Path("clip.mp4"), tmp_path / "whole.mp4")
    assert restore_video(whole, Counting(tiny_checkpoint)).frames == 6
    span = Job(clip, Path("clip.mp4"), tmp_path / "span.mp4")
    result = restore_video(span, Counting(tiny_checkpoint), RunOptions(video_start=0.25, video_duration=0.25))
    assert result.status == "ok" and result.frames == 3 and 0 < result.seconds < 60
    cut, times = read_video(span.output)
    all_frames, all_times = read_video(whole.output)
    assert np.allclose(times, np.subtract(all_times[3:], 0.25), atol=0.0011)
    assert min(psnr(a, b) for a, b in zip(cut, all_frames[3:])) > 38
    with av.open(str(span.output)) as container:
        sound = [float(p.pts * p.time_base) for p in container.demux(container.streams.audio) if p.size]
    assert sound and min(sound) >= -0.001 and max(sound) < 0.25


def test_cli_cuts_a_video_and_refuses_a_bad_time(tmp_path, rng, tiny_checkpoint):
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=6), audio=False)
    run = restore("derain", str(clip), str(tmp_path / "try.mp4"), "-m", str(tiny_checkpoint), "--start", "0:00.25", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["frames"] == 3
    bad = restore("derain", str(clip), str(tmp_path / "bad.mp4"), "-m", str(tiny_checkpoint), "--duration", "1:75")
    assert bad.returncode == 2 and "--duration '1:75'" in bad.stderr and not (tmp_path / "bad.mp4").exists()


def test_a_start_past_the_end_is_an_error_saying_how_long_the_video_is(tmp_path, rng, tiny_checkpoint):
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=6), audio=False)
    job = Job(clip, Path("clip.mp4"), tmp_path / "out" / "clip.mp4")
    result = restore_video(job, Counting(tiny_checkpoint), RunOptions(video_start=9))
    assert result.status == "error" and result.error == "no frames from 9 s (--start, --duration): the video is 0.5 s long"
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def noisy_panning_clip(rng: np.random.Generator, count: int = 8) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A textured picture with a photograph's contrast panning 4 pixels a frame, and the
    same frames with Gaussian noise (sigma 10): clean, noisy."""
    blurred = cv2.GaussianBlur(rng.normal(0, 1, (96, 160 + 4 * count, 3)).astype(np.float32), (0, 0), 2.5)
    wide = np.clip(128 + 50 * blurred / blurred.std(), 0, 255).astype(np.uint8)
    clean = [np.ascontiguousarray(wide[:, 4 * i : 4 * i + 160]) for i in range(count)]
    return clean, [np.clip(frame + rng.normal(0, 10, frame.shape) + 0.5, 0, 255).astype(np.uint8) for frame in clean]


SMOOTHED = RunOptions(temporal=TemporalConfig(radius=2), jpeg_quality=100)


def test_temporal_smoothing_averages_aligned_neighbours_keeping_every_frame_and_its_time(tmp_path, rng, tiny_checkpoint):
    """The model left out (strength 0: frames come out as they went in), so what changes
    is the smoothing alone: each noisy frame closer to the clean one, none lost or moved."""
    clean, frames = noisy_panning_clip(rng)
    clip = make_video(tmp_path / "clip.mp4", frames)
    as_is = restore_video(Job(clip, Path("clip.mp4"), tmp_path / "as-is.mp4"), Counting(tiny_checkpoint, strength=0.0),
                          RunOptions(jpeg_quality=100))
    result = restore_video(Job(clip, Path("clip.mp4"), tmp_path / "smooth.mp4"), Counting(tiny_checkpoint, strength=0.0), SMOOTHED)
    assert as_is.status == result.status == "ok" and result.frames == 8
    plain, plain_times = read_video(tmp_path / "as-is.mp4")
    smooth, times = read_video(tmp_path / "smooth.mp4")
    assert times == plain_times and len(smooth) == 8
    gains = [psnr(a, c) - psnr(b, c) for a, b, c in zip(smooth, plain, clean)]
    assert min(gains) > 1.0, gains
    assert settings_key(Counting(tiny_checkpoint), SMOOTHED) != settings_key(Counting(tiny_checkpoint), RunOptions(jpeg_quality=100))


def test_a_smoothed_video_resumes_with_the_frames_before_as_neighbours(tmp_path, rng, tiny_checkpoint):
    """A failure after 3 batches of 2 frames keeps the frames written by then (the
    smoothing holds 2 back); the same call restores the 2 frames before them again, as
    neighbours only, and the clip comes out as an uninterrupted run's (without those
    neighbours the first new frame differed: 34.5 dB)."""
    _, frames = noisy_panning_clip(rng)
    clip = make_video(tmp_path / "clip.mp4", frames, audio=False)
    job = Job(clip, Path("clip.mp4"), tmp_path / "out" / "clip.mp4")
    options = RunOptions(temporal=TemporalConfig(radius=2), jpeg_quality=100, batch_size=2, video_checkpoint_seconds=0)
    failed = restore_video(job, Counting(tiny_checkpoint, fail_on=4, failure=RuntimeError("simulated")), options)
    assert failed.status == "error" and "4 restored frame(s) kept" in failed.error
    again = Counting(tiny_checkpoint)
    result = restore_video(job, again, options)
    assert result.status == "ok" and result.frames == 8 and again.frames == 2 + 4  # 2 neighbours, 4 new
    straight = Job(clip, Path("clip.mp4"), tmp_path / "straight.mp4")
    assert restore_video(straight, Counting(tiny_checkpoint), options).status == "ok"
    resumed, times = read_video(job.output)
    uninterrupted, straight_times = read_video(straight.output)
    assert times == straight_times
    assert min(psnr(a, b) for a, b in zip(resumed, uninterrupted)) > 40  # the same frames, in other parts


def test_cli_temporal_is_bounded_and_says_when_there_is_no_video(tmp_path, rng, tiny_checkpoint):
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=4), audio=False)
    bad = restore("derain", str(clip), str(tmp_path / "bad.mp4"), "-m", str(tiny_checkpoint), "--temporal", "9")
    assert bad.returncode == 2 and "--temporal must be between 0 (off) and 8" in bad.stderr
    bad = restore("derain", str(clip), str(tmp_path / "bad.mp4"), "-m", str(tiny_checkpoint), "--temporal", "2", "--temporal-strength", "0")
    assert bad.returncode == 2 and "--temporal-strength must be more than 0" in bad.stderr and not (tmp_path / "bad.mp4").exists()
    cv2.imwrite(str(tmp_path / "a.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    run = restore("derain", str(tmp_path / "a.png"), str(tmp_path / "out"), "-m", str(tiny_checkpoint), "--temporal", "2")
    assert run.returncode == 0 and "--temporal smooths the frames of videos, animations, multi-page TIFFs and image sequences; there is none among the inputs" in run.stderr
    run = restore("derain", str(clip), str(tmp_path / "ok.mp4"), "-m", str(tiny_checkpoint), "--temporal", "2", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["frames"] == 4 and len(read_video(tmp_path / "ok.mp4")[0]) == 4


def test_a_stream_that_changes_frame_size_comes_out_at_its_first_size_with_a_note(tmp_path, rng, tiny_checkpoint):
    """Two H.264 streams of 64x48 and 96x64 one after the other in one Matroska track (a
    camera switching modes): every frame restored, the later ones scaled to 64x48, said."""
    streams_in = []
    for index, (width, height) in enumerate([(64, 48), (96, 64)]):
        raw = tmp_path / f"{index}.h264"
        with av.open(str(raw), "w", format="h264") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            encode(container, stream, moving_frames(rng, count=3, height=height, width=width), "yuv420p")
        streams_in.append(raw.read_bytes())
    (tmp_path / "both.h264").write_bytes(b"".join(streams_in))
    clip = tmp_path / "switch.mkv"
    with av.open(str(tmp_path / "both.h264")) as source, av.open(str(clip), "w") as target:
        out = target.add_stream_from_template(source.streams.video[0])
        for index, packet in enumerate(p for p in source.demux(source.streams.video[0]) if p.size):
            packet.stream, packet.pts, packet.dts, packet.time_base = out, index, index, Fraction(1, FPS)
            target.mux(packet)
    result = restore_video(Job(clip, Path("switch.mkv"), tmp_path / "out.mkv"), Counting(tiny_checkpoint))
    assert result.status == "ok" and result.frames == 6
    assert result.note == "the frame size changed from 64x48 to 96x64 at frame 4; such frames were scaled to 64x48"
    frames, _ = read_video(tmp_path / "out.mkv")
    assert [frame.shape for frame in frames] == [(48, 64, 3)] * 6


def test_dashcam_transport_streams_stay_ts_and_read_only_containers_become_mkv(tmp_path, rng, tiny_checkpoint):
    """A dashcam's .ts (H.264, AAC) comes out as .ts with its sound and frame times; an
    old .mpg (MPEG-2, MP2 sound) is read and written as .mkv, which takes its sound; .mpg
    is not offered as an output."""
    clips = tmp_path / "clips"
    clips.mkdir()
    dashcam = make_video(clips / "dash.ts", moving_frames(rng, count=6))
    with av.open(str(clips / "old.mpg"), "w") as container:
        video = container.add_stream("mpeg2video", rate=25)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        sound = container.add_stream("mp2", rate=44100)
        sound.layout = "mono"
        encode(container, video, moving_frames(rng, count=6), "yuv420p")
        encode_tone(container, sound, 0.25, 1152)
    run = restore("derain", str(clips / "*"), str(tmp_path / "out"), "-m", str(tiny_checkpoint), "--json")
    assert run.returncode == 0, run.stderr
    assert sorted(json.loads(line)["output"] for line in run.stdout.splitlines()) == [
        str(tmp_path / "out" / "dash.ts"), str(tmp_path / "out" / "old.mkv")]
    assert "not kept" not in run.stderr
    assert read_video(tmp_path / "out" / "dash.ts")[1] == read_video(dashcam)[1]
    assert streams(tmp_path / "out" / "dash.ts")["audio_packets"] == streams(dashcam)["audio_packets"] > 0
    assert streams(tmp_path / "out" / "old.mkv")["audio"] == 1 and len(read_video(tmp_path / "out" / "old.mkv")[0]) == 6
    refused = restore("derain", str(dashcam), str(tmp_path / "again"), "-m", str(tiny_checkpoint), "--ext", "mpg")
    assert refused.returncode == 2 and "--ext .mpg: unsupported" in refused.stderr
    refused = restore("derain", str(clips / "old.mpg"), str(tmp_path / "new.mpg"), "-m", str(tiny_checkpoint))
    assert refused.returncode == 2 and "restore reads .mpg videos but does not write them; name the output new.mkv" in refused.stderr
    assert not (tmp_path / "new.mpg").exists()


def combing(frame: np.ndarray) -> float:
    """How much each row differs from the mean of its neighbours: high where two instants are woven."""
    grey = frame.astype(np.float32).mean(axis=2)
    return float(np.abs(grey[1:-1] - (grey[:-2] + grey[2:]) / 2).mean())


def test_an_interlaced_video_is_deinterlaced_before_restoring(tmp_path, rng, tiny_checkpoint):
    """A 1080i-style clip: each frame woven from two fields of a picture panning 6 pixels
    a field (top field first, declared by the stream). Restored with the model left out
    (strength 0), the frames come out whole: closer to the top field's picture, without
    the comb, at the input's times, with a note."""
    blurred = cv2.GaussianBlur(rng.normal(0, 1, (96, 128 * 3, 3)).astype(np.float32), (0, 0), 5.0)
    wide = np.clip(128 + 60 * blurred / blurred.std(), 0, 255).astype(np.uint8)
    at = lambda field: np.ascontiguousarray(wide[:, 6 * field : 6 * field + 128])  # noqa: E731 - the picture at a field's instant
    woven = []
    for index in range(6):
        frame = at(2 * index).copy()
        frame[1::2] = at(2 * index + 1)[1::2]
        woven.append(frame)
    clip = tmp_path / "camcorder.mts"
    with av.open(str(clip), "w", format="mpegts") as container:
        video = container.add_stream("libx264", rate=25, options={"crf": "4", "x264-params": "interlaced=1:tff=1"})
        video.width, video.height, video.pix_fmt = 128, 96, "yuv420p"
        encode(container, video, woven, "yuv420p")
    result = restore_video(Job(clip, Path("camcorder.mts"), tmp_path / "out.mkv"), Counting(tiny_checkpoint, strength=0.0),
                           RunOptions(jpeg_quality=100))
    assert result.status == "ok" and result.frames == 6
    assert result.note == "interlaced video (two fields a frame) deinterlaced before restoring (bwdif); written progressive"
    restored, times = read_video(tmp_path / "out.mkv")
    with av.open(str(clip)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert times == read_video(clip)[1] and len(restored) == 6
    assert np.mean([combing(f) for f in restored]) < np.mean([combing(f) for f in decoded]) / 4  # measured: 2.1 against 22.3
    pictures = [at(2 * index) for index in range(6)]
    assert np.mean([psnr(a, c) for a, c in zip(restored, pictures)]) > np.mean([psnr(a, c) for a, c in zip(decoded, pictures)]) + 1
    progressive = make_video(tmp_path / "progressive.mp4", moving_frames(rng, count=2), audio=False)
    assert restore_video(Job(progressive, Path("p.mp4"), tmp_path / "p.mp4"), Counting(tiny_checkpoint)).note is None

def test_a_smoothed_span_takes_the_frames_before_it_as_neighbours(tmp_path, rng, tiny_checkpoint):
    """--start 0.3 with --temporal 2: the span's first frames are smoothed with the two
    frames shown before 0.3 s, as in a run over the whole clip. Both outputs are encoded
    (noisy frames: about 36 dB apart whatever the smoothing), so the span's first frame
    is held to its later ones: as close to the whole run's as they are (without the
    neighbours before it, it was 1.2 dB further: smoothed from one side only)."""
    _, frames = noisy_panning_clip(rng, count=10)
    clip = make_video(tmp_path / "clip.mp4", frames, audio=False)
    whole = restore_video(Job(clip, Path("clip.mp4"), tmp_path / "whole.mkv"), Counting(tiny_checkpoint), SMOOTHED)
    counting = Counting(tiny_checkpoint)
    span = restore_video(Job(clip, Path("clip.mp4"), tmp_path / "span.mkv"), counting,
                         RunOptions(temporal=TemporalConfig(radius=2), jpeg_quality=100, video_start=0.3))
    assert whole.frames == 10 and span.frames == 6 and counting.frames == 6 + 2  # frames 4-9, and 2-3 as neighbours
    in_whole, _ = read_video(tmp_path / "whole.mkv")
    in_span, _ = read_video(tmp_path / "span.mkv")
    closeness = [psnr(a, b) for a, b in zip(in_span, in_whole[4:])]
    assert closeness[0] > np.median(closeness[1:]) - 0.5, closeness


HDR10_MASTERING = "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400"


def make_deep_video(path: Path, frames: list[np.ndarray], hdr10: bool = False) -> Path:
    """A 10-bit HEVC clip (as a phone records HDR: BT.2020, HLG; with ``hdr10``, PQ and
    a mastering display's static metadata) of uint16 RGB ``frames``, near lossless."""
    height, width = frames[0].shape[:2]
    params = "log-level=error" + (":hdr10=1:" + HDR10_MASTERING if hdr10 else "")
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx265", rate=FPS, options={"crf": "2", "x265-params": params})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p10le"
        context = video.codec_context
        # BT.2020 primaries, HLG (18) or PQ (16), BT.2020 non-constant luminance matrix
        context.color_primaries, context.color_trc, context.colorspace = 9, 16 if hdr10 else 18, 9
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le").reformat(format="yuv420p10le", dst_colorspace=9)
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    return path


needs_hevc = pytest.mark.skipif(not encoder_available("libx265"), reason="this PyAV's FFmpeg has no libx265")


@needs_hevc
def test_a_ten_bit_video_comes_out_as_ten_bit_hevc_without_banding(tmp_path, tiny_checkpoint):
    """A slow gradient (256 10-bit levels across the frame) through the model left out
    (strength 0): written as 10-bit HEVC, tagged as the input (HLG) and ``hvc1`` in MOV
    (Apple's players); within half a 10-bit level of the input where 8 bits were 5.5
    levels off in 56 steps; the same with --temporal. WebM takes no 10-bit video here:
    8 bits, with a note."""
    ramp = np.linspace(0.30, 0.55, 256)[None, :, None] * np.ones((64, 1, 3))
    frames = [np.round((ramp + 0.004 * i) * 65535).astype(np.uint16) for i in range(6)]
    clip = make_deep_video(tmp_path / "hdr.mov", frames)
    source, _ = read_video(clip)
    assert source[0].dtype == np.uint16
    result = restore_video(Job(clip, Path("hdr.mov"), tmp_path / "out.mov"), Counting(tiny_checkpoint, strength=0.0))
    assert result.status == "ok" and result.frames == 6 and result.note is None
    with av.open(str(tmp_path / "out.mov")) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        assert (context.name, context.format.name, stream.codec_tag, context.color_trc, context.color_primaries) == (
            "hevc", "yuv420p10le", "hvc1", 18, 9)
    restored, _ = read_video(tmp_path / "out.mov")
    error = np.mean([np.abs(a.astype(np.float64) - b) for a, b in zip(restored, source)]) / 64  # in 10-bit levels
    assert error < 1.0 and len(np.unique(restored[0][32, :, 1])) > 150
    smoothed = restore_video(Job(clip, Path("hdr.mov"), tmp_path / "smooth.mov"), Counting(tiny_checkpoint, strength=0.0), SMOOTHED)
    assert smoothed.status == "ok"
    restored, _ = read_video(tmp_path / "smooth.mov")  # --temporal at 16 bits too
    error = np.mean([np.abs(a.astype(np.float64) - b) for a, b in zip(restored, source)]) / 64
    assert error < 1.0 and len(np.unique(restored[0][32, :, 1])) > 150
    webm = restore_video(Job(clip, Path("hdr.mov"), tmp_path / "out.webm"), Counting(tiny_checkpoint, strength=0.0))
    assert webm.status == "ok" and "written with 8 bits per sample" in webm.note
    assert read_video(tmp_path / "out.webm")[0][0].dtype == np.uint8


@needs_hevc
def test_a_ten_bit_video_is_smoothed_at_its_depth(tmp_path, rng, tiny_checkpoint):
    """Grey frames (4:2:0 leaves them whole) with grey noise, the model left out: smoothed,
    each frame at least 1 dB closer to the clean one than written as it came, at 16 bits."""
    clean, noisy = noisy_panning_clip(rng, count=6)
    clean = [np.repeat(frame[..., :1], 3, axis=2) for frame in clean]
    noisy = [np.repeat(frame[..., :1], 3, axis=2).astype(np.uint16) * 257 for frame in noisy]
    clip = make_deep_video(tmp_path / "noisy.mkv", noisy)
    for name, options in (("as-is", RunOptions(jpeg_quality=100)), ("smooth", SMOOTHED)):
        result = restore_video(Job(clip, Path("noisy.mkv"), tmp_path / f"{name}.mkv"), Counting(tiny_checkpoint, strength=0.0), options)
        assert result.status == "ok" and result.frames == 6 and result.note is None
    plain, _ = read_video(tmp_path / "as-is.mkv")
    smooth, _ = read_video(tmp_path / "smooth.mkv")
    assert smooth[0].dtype == np.uint16
    gains = [psnr(s / 257.0, c) - psnr(p / 257.0, c) for s, p, c in zip(smooth, plain, clean)]
    assert min(gains) > 1.0, gains


def hdr10_side_data(path: Path) -> dict[str, bytes]:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return {data.type.name: bytes(data) for data in side_data_of(frame) if data.type.name in ("MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL")}


@needs_hevc
def test_an_hdr10_video_keeps_its_mastering_display_and_light_levels(tmp_path, tiny_checkpoint):
    """ST 2086 / CTA-861.3 metadata (a display of 1000 cd/m2, MaxCLL 1000, MaxFALL 400)
    tells the screen the brightness range: the restored video carries the same."""
    frames = [np.full((64, 96, 3), 20000 + 500 * i, np.uint16) for i in range(3)]
    clip = make_deep_video(tmp_path / "hdr10.mp4", frames, hdr10=True)
    with VideoReader(clip) as reader:
        assert reader.info.hdr10 == "hdr10=1:" + HDR10_MASTERING
    result = restore_video(Job(clip, Path("hdr10.mp4"), tmp_path / "out.mp4"), Counting(tiny_checkpoint, strength=0.0))
    assert result.status == "ok"
    original, restored = hdr10_side_data(clip), hdr10_side_data(tmp_path / "out.mp4")
    assert set(original) == {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"} and restored == original
    assert streams(tmp_path / "out.mp4")["colorspace"] == 9


FRAMES = RunOptions(batch_size=2, video_checkpoint_seconds=0, video_frames=".png")


def test_frames_of_a_video_can_be_written_as_numbered_images_and_continue_after_a_failure(tmp_path, rng, tiny_checkpoint):
    """--frames png: the model left out, each frame comes out as the decoder gave it,
    exactly (lossless), as out/clip/000001.png on; a failure keeps the frames written, and
    the same call writes the rest."""
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=6))
    decoded, _ = read_video(clip)
    job = Job(clip, Path("clip.mp4"), tmp_path / "out" / "clip")
    failing = Counting(tiny_checkpoint, fail_on=3, failure=RuntimeError("simulated"), strength=0.0)
    result = restore_video(job, failing, FRAMES)
    assert result.status == "error" and "4 restored frame(s) kept" in result.error and not job.output.exists()
    again = Counting(tiny_checkpoint, strength=0.0)
    result = restore_video(job, again, FRAMES)
    assert result.status == "ok" and result.frames == 6 and again.frames == 2 and result.output == job.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip"]  # the work folder is gone
    assert sorted(p.name for p in job.output.iterdir()) == [f"{i:06d}.png" for i in range(1, 7)]
    for i, frame in enumerate(decoded):
        assert np.array_equal(cv2.cvtColor(cv2.imread(str(job.output / f"{i + 1:06d}.png")), cv2.COLOR_BGR2RGB), frame)


def test_cli_frames_option_plans_a_folder_per_video_and_refuses_a_video_output(tmp_path, rng, tiny_checkpoint):
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=3), audio=False)
    run = restore("derain", str(clip), str(tmp_path / "out"), "-m", str(tiny_checkpoint), "--frames", "png", "--json")
    assert run.returncode == 0, run.stderr
    line = json.loads(run.stdout)
    assert line["output"] == str(tmp_path / "out" / "clip") and line["frames"] == 3
    assert sorted(p.name for p in (tmp_path / "out" / "clip").iterdir()) == ["000001.png", "000002.png", "000003.png"]
    again = restore("derain", str(clip), str(tmp_path / "out"), "-m", str(tiny_checkpoint), "--frames", "png")
    assert again.returncode == 2 and "already exist" in again.stderr
    bad = restore("derain", str(clip), str(tmp_path / "x.mp4"), "-m", str(tiny_checkpoint), "--frames", "png")
    assert bad.returncode == 2 and "--frames writes a folder of images" in bad.stderr
    bad = restore("derain", str(clip), str(tmp_path / "o"), "-m", str(tiny_checkpoint), "--frames", "mkv")
    assert bad.returncode == 2 and "--frames mkv: not an image format" in bad.stderr


@needs_hevc
def test_frames_of_a_ten_bit_video_are_written_at_sixteen_bits(tmp_path, tiny_checkpoint):
    ramp = np.linspace(0.30, 0.55, 256)[None, :, None] * np.ones((64, 1, 3))
    clip = make_deep_video(tmp_path / "hdr.mov", [np.round(ramp * 65535).astype(np.uint16)] * 2)
    decoded, _ = read_video(clip)
    png = restore_video(Job(clip, Path("hdr.mov"), tmp_path / "png"), Counting(tiny_checkpoint, strength=0.0), FRAMES)
    assert png.status == "ok" and png.note is None
    frame = cv2.imread(str(tmp_path / "png" / "000001.png"), cv2.IMREAD_UNCHANGED)
    assert frame.dtype == np.uint16 and np.array_equal(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), decoded[0])
    jpeg = restore_video(Job(clip, Path("hdr.mov"), tmp_path / "jpg"), Counting(tiny_checkpoint, strength=0.0),
                         RunOptions(video_frames=".jpg"))
    assert jpeg.status == "ok" and "16-bit samples written as 8-bit jpg" in jpeg.note


def test_an_ext_of_the_other_kind_is_said_to_change_nothing(tmp_path, rng, tiny_checkpoint):
    """`--ext mp4` on photos (or `--ext png` on a video) changed nothing without a word."""
    clip = make_video(tmp_path / "clip.mp4", moving_frames(rng, count=2), audio=False)
    cv2.imwrite(str(tmp_path / "a.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    photo = restore("derain", str(tmp_path / "a.png"), str(tmp_path / "out"), "-m", str(tiny_checkpoint), "--ext", "mp4")
    assert photo.returncode == 0 and (tmp_path / "out" / "a.png").is_file()
    assert "warning: --ext .mp4 applies to videos; there is none among the inputs, which keep their own format" in photo.stderr
    video = restore("derain", str(clip), str(tmp_path / "out"), "-m", str(tiny_checkpoint), "--ext", "png")
    assert video.returncode == 0 and (tmp_path / "out" / "clip.mp4").is_file()
    assert "--ext .png applies to images; there is none among the inputs" in video.stderr
    fitting = restore("derain", str(tmp_path / "out" / "a.png"), str(tmp_path / "jpg"), "-m", str(tiny_checkpoint), "--ext", "jpg")
    assert fitting.returncode == 0 and "--ext" not in fitting.stderr
    # --quality where every output is lossless (PNG, a video's PNG frames) changed nothing, silently
    for source, flags, words in ((tmp_path / "a.png", (), "the outputs here are .png, written losslessly (--ext jpg for JPEG)"),
                                 (clip, ("--frames", "png"), "the outputs here are .png, written losslessly (--frames jpg for JPEG)")):
        lossless = restore("derain", str(source), str(tmp_path / "q"), "-m", str(tiny_checkpoint), "--quality", "80", "--overwrite", *flags)
        assert lossless.returncode == 0 and f"warning: --quality applies to JPEG, WebP, AVIF, HEIC and JPEG XL outputs and to videos; {words}" in lossless.stderr
    for source, flags in ((tmp_path / "a.png", ("--ext", "webp")), (clip, ()), (clip, ("--frames", "jpg"))):
        lossy = restore("derain", str(source), str(tmp_path / "q2"), "-m", str(tiny_checkpoint), "--quality", "80", "--overwrite", *flags)
        assert lossy.returncode == 0 and "--quality" not in lossy.stderr, (flags, lossy.stderr)
