"""Input expansion and batch planning (restore_core/engine/inputs.py): pure path logic,
no model, so these run in milliseconds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from restore_core.engine.inputs import (
    InputError, Job, collect_all_inputs, collect_inputs, names_output_file, output_name_refusal, parse_shard, paths_from_stdin,
    plan_batch, several_inputs_refusal,
)


def touch(folder: Path, *names: str) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not decoded by the planner")


def sources(jobs) -> list[str]:
    return sorted(job.source.name for job in jobs)


def test_plan_sorts_jobs_into_runnable_skipped_refused_and_in_the_way(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    touch(folder, "a.png", "b.png", "c.jpg", "c.png")
    touch(out, "b.png")
    jobs = collect_inputs(str(folder))

    plan = plan_batch(jobs, out)
    assert sources(plan.runnable) == ["a.png", "c.jpg", "c.png"] and plan.existing == [out / "b.png"]

    plan = plan_batch(jobs, out, skip_existing=True)
    assert sources(plan.skipped) == ["b.png"] and not plan.existing

    plan = plan_batch(jobs, out, ext=".png", overwrite=True)  # c.jpg and c.png both write out/c.png
    assert plan.refused == [(Job(folder / "c.png", Path("c.png"), out / "c.png"),
                             f"{folder / 'c.jpg'} also writes {out / 'c.png'}; --ext gives them one name: leave it out, "
                             "or restore one kind at a time into another folder")]
    assert sources(plan.runnable) == ["a.png", "b.png", "c.jpg"]
    # the clash is seen whichever shards c.jpg and c.png fall in
    refused = [job.source.name for index in range(4) for job, _ in plan_batch(jobs, out, ext=".png", overwrite=True, shard=(index, 4)).refused]
    assert refused == ["c.png"]


def test_plan_never_writes_onto_an_input(tmp_path):
    """Outputs that are inputs (their own, or another's: photo.jpg -> photo.png) are named
    in ``onto_inputs`` and nothing runs, in every shard alike; a missing input's path is
    no input to protect."""
    folder = tmp_path / "in"
    touch(folder, "photo.jpg", "photo.png", "x.png", "z.webp")
    jobs = collect_inputs(str(folder))
    plan = plan_batch(jobs, folder, ext=".png", overwrite=True)
    assert sorted(path.name for path in plan.onto_inputs) == ["photo.png", "photo.png", "x.png"]
    assert not plan.runnable and not plan.refused
    for index in range(3):  # ... in whichever shard the input in danger falls
        shard_plan = plan_batch(jobs, folder, ext=".png", overwrite=True, shard=(index, 3))
        assert not shard_plan.runnable and len(shard_plan.onto_inputs) == 3
    assert plan_batch(jobs, folder, ext=".tif").onto_inputs == []  # no input is a .tif
    (folder / "x.png").unlink()
    gone = [job for job in jobs if job.source.name == "x.png"]
    assert plan_batch(gone, folder).onto_inputs == [] and [job.source for job in plan_batch(gone, folder).runnable] == [folder / "x.png"]


def test_own_outputs_are_left_out_with_a_suffix_but_not_without(tmp_path):
    folder = tmp_path / "in"
    touch(folder, "a.png", "a_x.png", "b_x.png")  # b_x.png has no b.png: a real input
    jobs = collect_inputs(str(folder))
    plan = plan_batch(jobs, folder, suffix="_x", skip_existing=True)
    assert sources(plan.left_out) == ["a_x.png"]
    assert sources(plan.skipped) == ["a.png"] and sources(plan.runnable) == ["b_x.png"]
    # every shard leaves out the same file, so no shard restores a_x.png into a_x_x.png
    for index in range(2):
        shard_plan = plan_batch(jobs, folder, suffix="_x", skip_existing=True, shard=(index, 2))
        assert "a_x.png" not in sources(shard_plan.runnable + shard_plan.skipped)


def test_collect_skips_an_output_folder_inside_the_input_folder(tmp_path):
    folder = tmp_path / "in"
    touch(folder, "a.png", "sub/b.png", "restored/a.png", "restored/sub/b.png")
    found = collect_inputs(str(folder), recursive=True, out_dir=folder / "restored")
    assert [str(job.relative) for job in found] == ["a.png", "sub/b.png"]
    pattern = collect_inputs(f"{folder}/**/*.png", out_dir=folder / "restored")
    assert [str(job.relative) for job in pattern] == ["a.png", "sub/b.png"]
    # an output folder elsewhere, or the input folder itself, changes nothing
    assert len(collect_inputs(str(folder), recursive=True, out_dir=tmp_path / "out")) == 4
    assert len(collect_inputs(str(folder), recursive=True, out_dir=folder)) == 4


def test_a_pattern_in_a_folder_whose_name_has_brackets_finds_its_images(tmp_path):
    """glob reads "Trip [2024]" as "Trip " and one of 0, 2, 4: a pattern inside that
    folder matched nothing (or another folder). A folder named as written is that folder."""
    touch(tmp_path / "Trip [2024]", "a.jpg", "sub/b.jpg", "c.png")
    touch(tmp_path, "Trip 2/x.jpg")  # what the bracket reading matches
    jobs = collect_inputs(f"{tmp_path}/Trip [2024]/**/*.jpg")
    assert [(job.source.name, str(job.relative)) for job in jobs] == [("a.jpg", "a.jpg"), ("b.jpg", "sub/b.jpg")]
    assert sources(collect_inputs(f"{tmp_path}/Trip [2]/*.jpg")) == ["x.jpg"]
    with pytest.raises(InputError, match="the pattern matches no images"):
        collect_inputs(f"{tmp_path}/Trip [2024]/*.tif")


def test_an_output_named_like_a_file_it_cannot_be_is_refused_not_made_a_folder(tmp_path):
    """`restore derain a.png a.qoi` made a folder a.qoi/ holding a.png, as did a video name
    for an image, an image name for a video, and a file name for a folder of inputs."""
    touch(tmp_path, "in/a.png", "in/b.png", "clip.mp4")
    (tmp_path / "made.png").mkdir()
    one, clip, folder = str(tmp_path / "in" / "a.png"), str(tmp_path / "clip.mp4"), str(tmp_path / "in")
    refusal = lambda spec, name: output_name_refusal(spec, tmp_path / name)  # noqa: E731
    assert refusal(one, "a.qoi") == f"{tmp_path / 'a.qoi'}: restore does not write QOI; name it a.png or another image format"
    assert "names a video, and" in refusal(one, "a.mp4") and "(a.png, ...) or a folder" in refusal(one, "a.mp4")
    assert "names an image, and" in refusal(clip, "clip.png") and "--frames png" in refusal(clip, "clip.png")
    for spec in (folder, f"{folder}/*.png", "-"):
        assert "names a file, but the outputs of" in refusal(spec, "all.png")
        assert refusal(spec, "made.png") is None  # an existing folder is one
    # fine: what names_output_file writes, a folder without a media extension, a read-only
    # video format (refused elsewhere with the format to use), an input that does not exist
    for spec, name in ((one, "x.jpg"), (clip, "x.mkv"), (one, "out"), (folder, "out.d"), (clip, "x.wmv"), (str(tmp_path / "no.png"), "x.png")):
        assert refusal(spec, name) is None, (spec, name)


def test_out_names_a_file_only_for_one_image_and_an_image_name(tmp_path):
    touch(tmp_path, "in/a.png", "in/b.png")
    (tmp_path / "folder.png").mkdir()
    one = str(tmp_path / "in" / "a.png")
    assert names_output_file(one, tmp_path / "new" / "clear.jpg")
    assert names_output_file(one, tmp_path / "in" / "b.png")  # an existing file: replaced only with --overwrite
    assert not names_output_file(one, tmp_path / "out")  # no image extension: a folder
    assert not names_output_file(one, tmp_path / "folder.png")  # an existing folder stays one
    assert not names_output_file(str(tmp_path / "in"), tmp_path / "clear.png")  # a folder of inputs
    assert not names_output_file(str(tmp_path / "in" / "*.png"), tmp_path / "clear.png")
    assert not names_output_file("-", tmp_path / "clear.png")

    plan = plan_batch(collect_inputs(one), tmp_path / "x.png", output_file=tmp_path / "x.png")
    assert [job.output for job in plan.runnable] == [tmp_path / "x.png"]
    existing = plan_batch(collect_inputs(one), tmp_path / "in" / "b.png", output_file=tmp_path / "in" / "b.png")
    assert existing.existing == [tmp_path / "in" / "b.png"]
    with pytest.raises(InputError, match="one input"):
        plan_batch(collect_inputs(str(tmp_path / "in")), tmp_path / "x.png", output_file=tmp_path / "x.png")


def test_stdin_paths_one_a_line_or_nul_separated():
    """`find -print0 | restore derain - out/` ended in a ValueError traceback (a path
    with an embedded NUL); NUL-separated input is now read as such, names with newlines too."""
    assert paths_from_stdin(b"a.png\r\nsub/b c.png\n\n") == ["a.png", "sub/b c.png", "", ""]
    assert paths_from_stdin(b"./a.png\0two\nlines.png\0") == ["./a.png", "two\nlines.png"]
    assert paths_from_stdin(b"caf\xe9.png\n") == ["caf\udce9.png", ""]  # Latin-1 bytes, as os.listdir gives them
    assert collect_inputs("-", stdin_lines=paths_from_stdin(b"a.png\n\n"))[0].source == Path("a.png")


def test_a_file_listed_twice_is_restored_once(tmp_path):
    """Paths on stdin may repeat a file (under another spelling): the first is restored,
    the repeats are `repeated`, neither is refused as two inputs writing one output."""
    touch(tmp_path, "in/a.png", "in/b.png")
    lines = [f"{tmp_path}/in/a.png", f"{tmp_path}/in/b.png", f"{tmp_path}/in/./a.png"]
    plan = plan_batch(collect_inputs("-", stdin_lines=lines), tmp_path / "out")
    assert sources(plan.runnable) == ["a.png", "b.png"] and not plan.refused
    assert [str(job.source) for job in plan.repeated] == [f"{tmp_path}/in/a.png"]  # Path drops the "./"


def test_parse_shard_rejects_out_of_range():
    assert parse_shard("1/4") == (1, 4)
    for text, words in (("4/4", "I must be 0 to 3"), ("-1/2", "I must be 0 to 1"), ("a/b", "expected I/N"), ("1", "expected I/N"),
                        ("0/0", "N, the number of shards, must be >= 1")):
        with pytest.raises(InputError, match=re.escape(words)):
            parse_shard(text)


def test_files_in_formats_restore_cannot_read_are_named_not_skipped_in_silence(tmp_path):
    """Files restore cannot read (QOI, Photoshop, OpenEXR; camera raws without rawpy:
    test_camera_raw.py) beside JPEGs, or a folder of them, used to vanish from the batch
    without a word ("no images in this folder" when nothing else was there)."""
    from restore_core.engine.inputs import describe_unreadable

    folder = tmp_path / "camera"
    touch(folder, "a.jpg", "IMG_1.QOI", "IMG_2.qoi", "layers/b.PSD", "notes.txt", ".hidden.qoi", "logo.TGA", "sky.hdr")
    unreadable: list[Path] = []
    assert sources(collect_inputs(str(folder), recursive=True, unreadable=unreadable)) == ["a.jpg"]
    assert [p.name for p in unreadable] == ["IMG_1.QOI", "IMG_2.qoi", "b.PSD", "logo.TGA", "sky.hdr"]
    assert describe_unreadable(unreadable) == "2 .qoi (QOI), 1 .psd (Photoshop), 1 .tga (TGA), 1 .hdr (Radiance HDR)"
    unreadable.clear()
    collect_inputs(str(folder / "*"), unreadable=unreadable)  # a glob reports them too
    assert [p.name for p in unreadable] == ["IMG_1.QOI", "IMG_2.qoi", "logo.TGA", "sky.hdr"]

    only = tmp_path / "only"
    touch(only, "IMG_1.exr", "IMG_2.qoi")
    with pytest.raises(InputError, match=r"no images in this folder; it holds 1 \.exr \(OpenEXR\), 1 \.qoi \(QOI\), "
                                         r"which restore cannot read: convert to PNG, TIFF or JPEG first$"):
        collect_inputs(str(only))


def test_a_paired_folder_given_as_input_names_its_two_halves(tmp_path):
    """`restore derain pairs/ out/` (or `make-pairs pairs/ ...`) on a folder holding input/
    beside target/ said "no images (.png, .jpg, ... 34 extensions) in this folder (use
    --recursive for sub-folders)", and --recursive would restore the clean half too."""
    touch(tmp_path / "set", "input/1.png", "target/1.png")
    with pytest.raises(InputError) as refused:
        collect_inputs(str(tmp_path / "set"))
    assert str(refused.value) == (f"{tmp_path / 'set'}: no images in this folder; it is a paired folder (input/ beside target/): "
                                  f"name one half, {tmp_path / 'set' / 'input'} (the degraded images) or {tmp_path / 'set' / 'target'} (the clean ones)")
    touch(tmp_path / "plain", "sub/1.png")
    with pytest.raises(InputError, match=r"plain: no images in this folder \(use --recursive for sub-folders\)$"):
        collect_inputs(str(tmp_path / "plain"))


def test_a_file_named_without_an_image_extension_is_written_as_png(tmp_path):
    """`restore derain scan out/` read the file by its content, restored it, then failed
    on writing "out/scan": OpenCV's "could not find encoder for the specified extension"
    over three lines. Such a file's copy is a PNG (lossless, any depth) unless --ext says;
    so is a Netpbm bitmap's (.pbm), whose restored grey levels one bit cannot hold. A
    JPEG named .jfif stays a .jfif."""
    from restore_core.engine.inputs import Job, plan_outputs

    jobs = [Job(tmp_path / name, Path(name)) for name in ("scan", "photo.jfif", "a.JPG", "b.tif", "fax.pbm")]
    planned = [job.output.name for job in plan_outputs(jobs, tmp_path / "out")]
    assert planned == ["scan.png", "photo.jfif", "a.JPG", "b.tif", "fax.png"]
    assert [job.output.name for job in plan_outputs(jobs[:1], tmp_path / "out", ext=".jpg")] == ["scan.jpg"]


def test_a_folder_s_jpeg_and_netpbm_files_under_their_other_names_are_restored(tmp_path):
    """A folder's photo.jfif (as browsers on Windows save photos) and scan.pgm were left
    out without a word: neither extension was known. The other names of JPEG and the
    Netpbm family are images; a text file beside them is not."""
    names = ("a.jfif", "b.JPE", "c.jif", "d.ppm", "e.pgm", "f.pnm", "g.pbm", "notes.txt")
    touch(tmp_path / "in", *names)
    assert sorted(job.source.name for job in collect_inputs(str(tmp_path / "in"))) == sorted(names[:-1])


def test_several_inputs_are_collected_in_order_and_go_into_a_folder(tmp_path):
    """``restore derain a.png shots/ 'more/*.png' out/`` (or photos/*.jpg as the shell
    expands it): each spec's jobs in the order given, a folder's mirrored below OUT; a
    file named twice is restored once; same-named files of two folders are refused with
    the way out; OUT must be a folder and '-' stands alone."""
    touch(tmp_path / "shots", "b.png", "c.png")
    touch(tmp_path / "more", "a.png", "d.png")
    touch(tmp_path, "a.png")
    specs = [str(tmp_path / "a.png"), str(tmp_path / "shots"), str(tmp_path / "more" / "*.png"), str(tmp_path / "a.png")]
    jobs = collect_all_inputs(specs)
    assert [(job.source.relative_to(tmp_path).as_posix(), job.relative.as_posix()) for job in jobs] == [
        ("a.png", "a.png"), ("shots/b.png", "b.png"), ("shots/c.png", "c.png"), ("more/a.png", "a.png"), ("more/d.png", "d.png"),
        ("a.png", "a.png")]
    plan = plan_batch(jobs, tmp_path / "out")
    assert sources(plan.runnable) == ["a.png", "b.png", "c.png", "d.png"] and sources(plan.repeated) == ["a.png"]
    assert [(job.source, why) for job, why in plan.refused] == [(tmp_path / "more" / "a.png", (
        f"{tmp_path / 'a.png'} also writes {tmp_path / 'out' / 'a.png'}; name their common folder with --recursive "
        "(sub-folders are mirrored), or restore them into separate folders"))]
    assert several_inputs_refusal(specs, tmp_path / "out") is None and several_inputs_refusal(specs[:1], tmp_path / "x.png") is None
    assert "names a file, but the outputs of 4 inputs go into a folder" in several_inputs_refusal(specs, tmp_path / "x.png")
    assert "'-' reads the inputs' paths from stdin: give it alone" in several_inputs_refusal(["-", specs[0]], tmp_path / "out")


def test_a_pattern_says_which_images_it_leaves_out_for_their_case(tmp_path):
    """Cameras write IMG_0001.JPG; 'photos/*.jpg' matched none of them, as in the shell,
    and restore said only that the pattern matched no images, or, beside an edited
    photo saved as .jpg, restored that one alone without a word."""
    from restore_core.engine.inputs import OtherCase, any_case_pattern, other_case_warning

    assert any_case_pattern("*.jpg") == "*.[jJ][pP][gG]"
    assert any_case_pattern("IMG_[0-9]?.Jpg") == "[iI][mM][gG]_[0-9]?.[jJ][pP][gG]"  # a bracket expression stays as written
    touch(tmp_path / "card", "IMG_0001.JPG", "IMG_0002.JPG", "IMG_0003.JPG", "IMG_0004.JPG", "notes.TXT")
    with pytest.raises(InputError) as none:
        collect_inputs(f"{tmp_path}/card/*.jpg")
    assert str(none.value) == (f"{tmp_path}/card/*.jpg: the pattern matches no images; it leaves out 4 image(s) that match it in "
                               "another case (IMG_0001.JPG, IMG_0002.JPG, IMG_0003.JPG, ...): patterns are case-sensitive, as the "
                               f"shell's are; '{tmp_path}/card/*.[jJ][pP][gG]' takes every case")
    touch(tmp_path / "card", "edited.jpg")
    missed: list[OtherCase] = []
    assert sources(collect_all_inputs([f"{tmp_path}/card/*.jpg"], other_case=missed)) == ["edited.jpg"]
    assert [m.name for m in missed[0].images] == ["IMG_0001.JPG", "IMG_0002.JPG", "IMG_0003.JPG", "IMG_0004.JPG"]
    assert other_case_warning(missed[0]).startswith(f"'{tmp_path}/card/*.jpg' leaves out 4 image(s) that match it in another case")
    assert len(collect_inputs(f"{tmp_path}/card/*.[jJ][pP][gG]")) == 5
    # Folders are taken as written: Photos/ and photos/ are two folders on a case-sensitive disk.
    touch(tmp_path, "Photos/a.jpg", "photos/b.jpg")
    quiet: list[OtherCase] = []
    assert sources(collect_all_inputs([f"{tmp_path}/Photos/*.jpg"], other_case=quiet)) == ["a.jpg"] and quiet == []


def test_a_url_is_said_to_be_one(tmp_path):
    with pytest.raises(InputError, match=r"^https://example.com/rain.jpg: a URL; restore reads files and folders: download it first"):
        collect_inputs("https://example.com/rain.jpg")
