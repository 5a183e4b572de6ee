"""Training data sources: the ordered, bounded read-ahead that decodes training images."""

import threading
import time

import pytest

from restore_core.training.sources import read_ahead


def test_read_ahead_keeps_the_order_and_stays_a_bounded_distance_ahead():
    consumed = []
    ahead = []

    def read(item):
        ahead.append(item - len(consumed))  # how far ahead of the consumer this read is
        time.sleep(0.002 * (item % 3))  # reads finish out of order
        return item * 10

    for value in read_ahead(range(40), read, threads=3):
        consumed.append(value)
    assert consumed == [i * 10 for i in range(40)]
    assert max(ahead) <= 2 * 3


def test_read_ahead_runs_reads_in_parallel():
    active, peak, lock = [0], [0], threading.Lock()

    def read(item):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return item

    assert list(read_ahead(range(12), read, threads=4)) == list(range(12))
    assert peak[0] > 1


def test_an_error_comes_at_its_items_turn_and_later_items_are_not_read():
    read_items = []

    def read(item):
        read_items.append(item)
        if item == 5:
            raise ValueError("bad image 5")
        return item

    got = []
    with pytest.raises(ValueError, match="bad image 5"):
        for value in read_ahead(range(100), read, threads=2):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]
    assert max(read_items) < 5 + 2 * 2 + 1  # at most the read-ahead window past the error


def test_one_thread_reads_in_the_loop():
    assert list(read_ahead("abc", str.upper, threads=1)) == ["A", "B", "C"]


def test_prepare_data_tells_its_progress_over_the_training_images(tmp_path):
    from dataclasses import replace

    from conftest import write_random_pngs
    from restore_core.training.recipes import RECIPES, DataConfig
    from restore_core.training.sources import prepare_data

    write_random_pngs(tmp_path / "pairs" / "input", 4, 32, 32, seed=1)
    write_random_pngs(tmp_path / "pairs" / "target", 4, 32, 32, seed=2)
    write_random_pngs(tmp_path / "clean", 3, 32, 32, seed=3)
    recipe = replace(RECIPES["taylor-derain"], patch_size=32,
                     data=DataConfig(paired=(str(tmp_path / "pairs"),), clean=(str(tmp_path / "clean"),), holdout_every=2))
    calls = []
    prepare_data(recipe, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 5) for i in range(6)]  # 2 training pairs (2 held out) + 3 clean images


def test_the_log_line_counts_what_data_json_lists():
    from restore_core.training.sources import describe

    summary = {"paired": {"rain/": {"train": 45, "held_out": ["a.png"] * 5}}, "clean": {"photos/": 0, "skimage.data": 6},
               "excluded_near_duplicates": 60, "excluded": [f"photos/{i}.png" for i in range(60)], "clean_colour_grey": [6, 0],
               "pool": "disk", "pool_mib": 43.3, "validation_mib": 4.4}
    line = describe(summary)
    assert line == ("45 pairs from rain/, 5 held out; 0 clean images from photos/; 6 clean images from skimage.data; "
                    "clean: 6 colour, 0 grey; 60 left out as near-duplicates of validation or --exclude-like images; "
                    "pool disk 43.3 MiB; validation 4.4 MiB")
    assert "photos/0.png" not in line  # every excluded file is named in data.json, not in the log


def test_greyness_is_found_while_reading_not_by_a_second_pass_over_the_pool(tmp_path, monkeypatch):
    """The sampler's colour/grey split used to compare the channels of every pool image
    at start-up: on a disk pool larger than memory, a read of the whole pool from disk."""
    from dataclasses import replace

    import cv2
    import numpy as np

    from restore_core.training import data as D
    from restore_core.training.recipes import RECIPES, DataConfig
    from restore_core.training.sources import prepare_data

    folder = tmp_path / "clean"
    folder.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "a.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "b.png"), rng.integers(0, 256, (40, 40), dtype=np.uint8))
    data = prepare_data(replace(RECIPES["taylor-derain"], patch_size=32, data=DataConfig(clean=(str(folder),))))
    assert [item.grey for item in data.sampler.clean] == [False, True]
    assert (data.sampler.colour_indices, data.sampler.grey_indices) == ([0], [1])
    monkeypatch.setattr(D, "is_grey", lambda image: pytest.fail("the pool was read again"))
    again = D.PatchSampler([], data.sampler.clean, 32, lambda x, r: x)
    assert (again.colour_indices, again.grey_indices) == ([0], [1])


def test_clean_folders_say_what_they_hold_that_restore_cannot_read(tmp_path):
    from dataclasses import replace

    from conftest import write_random_pngs
    from restore_core.training.errors import TrainingError
    from restore_core.training.recipes import RECIPES, DataConfig
    from restore_core.training.sources import describe, prepare_data

    write_random_pngs(tmp_path / "clean", 2, 40, 40, seed=0)
    (tmp_path / "clean" / "IMG_9.QOI").write_bytes(b"qoif")
    data = prepare_data(replace(RECIPES["taylor-derain"], patch_size=32, data=DataConfig(clean=(str(tmp_path / "clean"),))))
    assert data.summary["unreadable"] == [str(tmp_path / "clean" / "IMG_9.QOI")]
    assert "1 files in formats restore cannot read left out (1 .qoi (QOI))" in describe(data.summary)

    (tmp_path / "layers").mkdir()
    (tmp_path / "layers" / "a.psd").write_bytes(b"psd")
    with pytest.raises(TrainingError, match=r"layers: no images restore can read; it holds 1 \.psd \(Photoshop\): convert"):
        prepare_data(replace(RECIPES["taylor-derain"], patch_size=32, data=DataConfig(clean=(str(tmp_path / "layers"),))))


def test_a_clean_folder_that_gives_no_image_is_refused_with_what_to_give_instead(tmp_path):
    """A --clean folder beside others that gives nothing was skipped silently; a paired
    folder's degraded half must not become clean images, and sub-folders are not searched."""
    from dataclasses import replace

    from conftest import write_random_pngs
    from restore_core.training.errors import TrainingError
    from restore_core.training.recipes import RECIPES, DataConfig
    from restore_core.training.sources import prepare_data

    write_random_pngs(tmp_path / "photos", 2, 40, 40, seed=0)
    write_random_pngs(tmp_path / "tree" / "2023", 1, 40, 40, seed=1)
    write_random_pngs(tmp_path / "tree" / "2024" / "june", 1, 40, 40, seed=2)
    write_random_pngs(tmp_path / "set" / "input", 2, 40, 40, seed=3)
    write_random_pngs(tmp_path / "set" / "target", 2, 40, 40, seed=3)
    (tmp_path / "empty").mkdir()

    def with_clean(*folders: str):
        return prepare_data(replace(RECIPES["taylor-derain"], patch_size=32, data=DataConfig(clean=tuple(str(tmp_path / f) for f in folders))))

    assert with_clean("photos").summary["clean"] == {str(tmp_path / "photos"): 2}
    with pytest.raises(TrainingError, match=r"tree: no images in it, only in its sub-folders \(2023/, 2024/june/\); give each as --clean"):
        with_clean("photos", "tree")
    with pytest.raises(TrainingError, match=r"set: a paired folder \(input/ beside target/\), not clean images: give it as --data, "
                                            r"or its clean half as --clean .*set/target"):
        with_clean("set", "photos")
    with pytest.raises(TrainingError, match=r"empty: no images in it \(\.png, \.jpg"):
        with_clean("photos", "empty")


def test_exclude_like_reads_targets_images_or_sub_folders_and_refuses_a_folder_with_none(tmp_path):
    """--exclude-like of an empty folder, or of a test set kept in scene sub-folders, kept
    nothing out of training without a word."""
    from dataclasses import replace

    from conftest import write_random_pngs
    from restore_core.training.errors import TrainingError
    from restore_core.training.recipes import RECIPES, DataConfig
    from restore_core.training.sources import exclusion_references, prepare_data

    write_random_pngs(tmp_path / "set" / "input", 2, 40, 40, seed=3)
    targets = write_random_pngs(tmp_path / "set" / "target", 2, 40, 40, seed=4)
    scenes = write_random_pngs(tmp_path / "test" / "scene1" / "sharp", 2, 40, 40, seed=5)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert exclusion_references(tmp_path / "set") == targets
    assert exclusion_references(tmp_path / "set" / "target") == targets
    assert exclusion_references(tmp_path / "test") == scenes
    with pytest.raises(TrainingError, match=r"empty: --exclude-like found no images in it or below it"):
        exclusion_references(tmp_path / "empty")
    # the scene images really are kept out: training on them with the scenes excluded leaves nothing
    recipe = replace(RECIPES["taylor-derain"], patch_size=32)
    with pytest.raises(TrainingError, match=r"2 left out as near-duplicates"):
        prepare_data(replace(recipe, data=DataConfig(clean=(str(tmp_path / "test" / "scene1" / "sharp"),),
                                                     exclude_near_duplicates_of=(str(tmp_path / "test"),))))


def test_pairs_smaller_than_the_patch_are_left_out_and_clean_images_enlarged_both_named(tmp_path):
    """Enlarging a pair resizes its degradation too (noise grains, streak widths): such a
    pair used to be enlarged silently; now it is left out and named, and a clean image,
    degraded after enlarging, is kept and named."""
    from dataclasses import replace

    from conftest import write_random_pngs
    from restore_core.training.errors import TrainingError
    from restore_core.training.recipes import RECIPES, DataConfig
    from restore_core.training.sources import describe, prepare_data

    for side, name in ((48, "big"), (24, "small")):
        write_random_pngs(tmp_path / name / "input", 1, side, side + 4, seed=side)
        write_random_pngs(tmp_path / name / "target", 1, side, side + 4, seed=side + 1)
    write_random_pngs(tmp_path / "clean", 1, 20, 40, seed=5)
    recipe = replace(RECIPES["taylor-derain"], patch_size=32,
                     data=DataConfig(paired=(str(tmp_path / "big"), str(tmp_path / "small")), clean=(str(tmp_path / "clean"),)))
    data = prepare_data(recipe)
    assert [pair.clean.shape[:2] for pair in data.sampler.paired] == [(48, 52)]
    assert data.summary["pairs_smaller_than_patch"] == [f"{tmp_path / 'small' / 'target' / '00.png'} (28x24)"]
    assert [image.clean.shape[:2] for image in data.sampler.clean] == [(32, 64)]
    assert data.summary["clean_enlarged"] == [f"{tmp_path / 'clean' / '00.png'} (40x20)"]
    line = describe(data.summary)
    assert "1 pairs smaller than the 32-pixel patch left out (" in line
    assert "1 clean images smaller than the 32-pixel patch enlarged to it (" in line

    only_small = replace(recipe, data=DataConfig(paired=(str(tmp_path / "small"),)))
    with pytest.raises(TrainingError, match=r"every training pair is smaller than the 32-pixel patch .*00\.png \(28x24\)\); pass a smaller --patch-size"):
        prepare_data(only_small)
    assert len(prepare_data(replace(only_small, patch_size=24)).sampler.paired) == 1


def test_every_image_is_decoded_once(tmp_path, monkeypatch):
    """Validation folders were decoded twice (a thumbnail pass for the leakage check, then
    the pairs); training, held-out and validation images are now each decoded once."""
    from collections import Counter
    from dataclasses import replace

    from conftest import write_random_pngs
    from restore_core.training import data as D
    from restore_core.training.recipes import RECIPES, DataConfig
    from restore_core.training.sources import prepare_data

    for name, seed in (("pairs", 1), ("val", 3)):
        write_random_pngs(tmp_path / name / "input", 4, 32, 32, seed=seed)
        write_random_pngs(tmp_path / name / "target", 4, 32, 32, seed=seed + 1)
    write_random_pngs(tmp_path / "clean", 3, 32, 32, seed=5)
    reads: Counter = Counter()
    real_read = D.read_rgb

    def counted(path):
        reads[str(path)] += 1
        return real_read(path)

    monkeypatch.setattr(D, "read_rgb", counted)
    data = prepare_data(replace(RECIPES["taylor-derain"], patch_size=32, data=DataConfig(
        paired=(str(tmp_path / "pairs"),), clean=(str(tmp_path / "clean"),), validation=(str(tmp_path / "val"),), holdout_every=2)))
    assert len(reads) == 8 + 8 + 3 and set(reads.values()) == {1}
    assert [vset.name for vset in data.validation] == ["pairs:holdout", "val"]


def test_images_in_no_pair_are_named_in_the_data_line_and_data_json(tmp_path):
    """An input whose target is missing (or the reverse) was dropped from training and
    validation without a word, while `restore benchmark` warned about the same folder."""
    from dataclasses import replace

    from conftest import write_random_pngs
    from restore_core.training.recipes import RECIPES, DataConfig
    from restore_core.training.sources import describe, prepare_data

    for name, seed in (("train", 1), ("val", 7)):
        write_random_pngs(tmp_path / name / "input", 3, 40, 40, seed=seed)
        write_random_pngs(tmp_path / name / "target", 2, 40, 40, seed=seed + 1)
    recipe = replace(RECIPES["taylor-derain"], patch_size=32,
                     data=DataConfig(paired=(str(tmp_path / "train"),), validation=(str(tmp_path / "val"),)))
    data = prepare_data(recipe)
    assert len(data.sampler.paired) == 2 and [len(vset.pairs) for vset in data.validation] == [2]
    assert data.summary["unpaired"] == [str(tmp_path / "train" / "input" / "02.png"), str(tmp_path / "val" / "input" / "02.png")]
    assert f"2 images in no pair (input or target missing) left out ({tmp_path / 'train' / 'input' / '02.png'}, " in describe(data.summary)


def test_when_no_training_image_is_left_the_error_says_what_took_them(tmp_path):
    """"no training images" when --holdout-every 1 held out every pair, or --val named the
    training folder (its pairs all near-duplicates of validation), said nothing of why; a
    --holdout-every larger than a folder's pairs held none out without a word."""
    from dataclasses import replace

    from conftest import write_random_pngs
    from restore_core.training.errors import TrainingError
    from restore_core.training.recipes import RECIPES, DataConfig
    from restore_core.training.sources import describe, prepare_data

    write_random_pngs(tmp_path / "set" / "input", 3, 40, 40, seed=1)
    write_random_pngs(tmp_path / "set" / "target", 3, 40, 40, seed=2)
    (tmp_path / "empty").mkdir()
    recipe = replace(RECIPES["taylor-derain"], patch_size=32)
    folder = str(tmp_path / "set")
    for data, message in [
        (DataConfig(paired=(folder,), holdout_every=1), r"no training images left: 3 pairs held out for validation \(--holdout-every 1\)$"),
        (DataConfig(paired=(folder,), validation=(folder,)),
         r"no training images left: 3 left out as near-duplicates of validation or --exclude-like images \(.*00\.png, .*01\.png, and 1 more\)$"),
        (DataConfig(clean=(str(tmp_path / "empty"),)), r"empty: no images in it \("),
    ]:
        with pytest.raises(TrainingError, match=message):
            prepare_data(replace(recipe, data=data))
    few = prepare_data(replace(recipe, data=DataConfig(paired=(folder,), holdout_every=5)))
    assert f"3 pairs from {folder}, none held out (fewer than --holdout-every 5 pairs)" in describe(few.summary)


def test_the_builtin_photographs_are_distinct_and_none_is_a_bundled_samples_source():
    """--builtin-photographs adds each of scikit-image's photographs once (``data.cat`` is
    ``data.chelsea``: it once doubled that photograph's weight), and not the stereo
    motorcycle the bundled samples are cut from (``degradations.samples``): the demo
    restores them as unseen images."""
    import numpy as np
    from skimage import data

    from restore_core.training.data import builtin_photographs

    photos = [np.round(photo * 255).astype(np.uint8) for photo in builtin_photographs()]
    assert len(photos) >= 4
    left, right = data.stereo_motorcycle()[:2]
    for i, photo in enumerate(photos):
        assert not any(photo.shape == other.shape and np.array_equal(photo, other) for other in [*photos[i + 1:], left, right])


def test_images_deeper_than_8_bits_are_counted_as_trained_on_in_8_bits(tmp_path):
    """The training pool holds 8-bit pixels: a 16-bit scan's finer steps are not trained
    on. That happened without a word; the run's data line now counts and names such
    images (8-bit ones, PNG or JPEG, are not counted)."""
    from dataclasses import replace

    import cv2
    import numpy as np

    from conftest import write_random_pngs
    from restore_core.training.recipes import RECIPES, DataConfig
    from restore_core.training.sources import describe, prepare_data

    write_random_pngs(tmp_path / "clean", 2, 40, 40, seed=3)
    deep = (np.random.default_rng(0).random((40, 40, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "clean" / "scan16.png"), deep)
    cv2.imwrite(str(tmp_path / "clean" / "steps16.png"), (deep // 257 * 257).astype(np.uint16))  # 16-bit file, 8-bit steps
    write_random_pngs(tmp_path / "pairs" / "input", 1, 40, 40, seed=4)
    write_random_pngs(tmp_path / "pairs" / "target", 1, 40, 40, seed=5)
    recipe = replace(RECIPES["taylor-derain"], patch_size=32,
                     data=DataConfig(paired=(str(tmp_path / "pairs"),), clean=(str(tmp_path / "clean"),)))
    data = prepare_data(recipe)
    assert data.summary["deeper_than_8bit"] == [str(tmp_path / "clean" / "scan16.png")]
    assert f"1 images deeper than 8 bits trained on as 8-bit, as the pool holds them ({tmp_path / 'clean' / 'scan16.png'})" in describe(data.summary)
    cv2.imwrite(str(tmp_path / "pairs" / "target" / "00.png"), deep)
    data = prepare_data(recipe)
    assert data.summary["deeper_than_8bit"] == [str(tmp_path / "pairs" / "target" / "00.png"), str(tmp_path / "clean" / "scan16.png")]
