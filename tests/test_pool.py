"""Training-image pools: memory, or a memory-mapped file on disk (restore train --pool)."""

from dataclasses import replace

import numpy as np
import pytest

from conftest import write_random_pngs
from restore_core.training.pool import DiskPool, MemoryPool, choose_pool, image_bytes, make_pool
from restore_core.training.recipes import RECIPES, DataConfig
from restore_core.training.sources import prepare_data

GIB = 2**30


def test_auto_goes_to_disk_beyond_half_the_available_memory():
    assert choose_pool("auto", 4 * GIB, 10 * GIB) == "memory"
    assert choose_pool("auto", 6 * GIB, 10 * GIB) == "disk"
    assert choose_pool("auto", 6 * GIB, None) == "memory"  # unknown (off Linux): as before
    assert choose_pool("disk", 1, 10 * GIB) == "disk"
    assert choose_pool("memory", 9 * GIB, 10 * GIB) == "memory"


def test_a_memory_pool_that_cannot_fit_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match=r"need 29\.0 GiB .* 20\.0 GiB of memory available: --pool disk"):
        choose_pool("memory", 29 * GIB, 20 * GIB)
    with pytest.raises(ValueError, match="expected one of auto, memory, disk"):
        choose_pool("ram", 1, 10 * GIB)


def test_a_disk_pool_needs_the_free_space_first(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path}: the training images need .* GiB for the disk pool, and only .* GiB is free"):
        make_pool("disk", tmp_path, 2**62)
    assert list(tmp_path.iterdir()) == []


def test_disk_pool_returns_the_images_bit_exact_read_only_from_a_nameless_file(tmp_path):
    pool = DiskPool(tmp_path)
    pool.segment_bytes = 64 * 1024  # several segments, and images larger than one
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 50), (200, 300), (7, 9), (130, 130), (1, 1)]]
    kept = [pool.keep(image) for image in images]
    assert len(pool._segments) >= 3
    for image, view in zip(images, kept):
        assert view.dtype == np.uint8 and np.array_equal(image, view)
        with pytest.raises(ValueError, match="read-only"):
            view[0, 0, 0] = 1
    assert pool.stored_bytes == sum(image.nbytes for image in images)
    assert list(tmp_path.iterdir()) == []  # unlinked at once: nothing to clean up, however the run ends


def test_memory_pool_keeps_the_array_itself_read_only():
    image = np.zeros((4, 4, 3), np.uint8)
    assert MemoryPool().keep(image) is image and not image.flags.writeable


def test_image_bytes_reads_headers_only_and_counts_unreadable_files_as_zero(tmp_path):
    paths = write_random_pngs(tmp_path / "a", 2, 30, 40, seed=0)
    broken = tmp_path / "a" / "broken.png"
    broken.write_bytes(b"not an image")
    assert image_bytes(paths + [broken]) == 2 * 3 * 30 * 40
    # A JPEG XL, which Pillow opens only through a plugin, by its codestream header
    # (the header of a 4000x3000 picture, no pixels: it was counted as 0 bytes).
    from test_jpeg_xl import _codestream

    (tmp_path / "a" / "big.jxl").write_bytes(_codestream(4000, 3000))
    assert image_bytes(paths + [tmp_path / "a" / "big.jxl"]) == 2 * 3 * 30 * 40 + 3 * 4000 * 3000


def test_disk_and_memory_pools_draw_the_same_batches(tmp_path):
    """--pool changes where the pixels live, never which patches a step draws: paired
    and clean images, the data workers too (they inherit the mapping when forked)."""
    from restore_core.training.prefetch import BatchPrefetcher

    paired = tmp_path / "pairs"
    write_random_pngs(paired / "input", 3, 48, 64, seed=1)
    write_random_pngs(paired / "target", 3, 48, 64, seed=2)
    write_random_pngs(tmp_path / "clean", 4, 40, 56, seed=3)
    recipe = replace(RECIPES["taylor-derain"], batch_size=3, patch_size=32,
                     data=DataConfig(paired=(str(paired),), clean=(str(tmp_path / "clean"),)))
    run = tmp_path / "run"
    in_memory = prepare_data(recipe, "memory", run)
    on_disk = prepare_data(recipe, "disk", run)
    assert (in_memory.summary["pool"], on_disk.summary["pool"]) == ("memory", "disk")
    assert in_memory.summary["pool_mib"] == on_disk.summary["pool_mib"]
    assert all(not image.clean.flags.writeable for image in on_disk.sampler.paired + on_disk.sampler.clean)
    for step in range(6):
        got, want = on_disk.sampler.batch(0, step, 3), in_memory.sampler.batch(0, step, 3)
        assert all(np.array_equal(g, w) for g, w in zip(got, want)), step
    with BatchPrefetcher(on_disk.sampler, 0, 3, 0, first_step=0, workers=2) as prefetcher:
        for step in range(4):
            assert all(np.array_equal(g, w) for g, w in zip(prefetcher.batch(step), in_memory.sampler.batch(0, step, 3))), step
    assert list(run.iterdir()) == []


def test_auto_takes_the_disk_when_the_images_would_crowd_memory(tmp_path, monkeypatch):
    from restore_core.training import sources

    write_random_pngs(tmp_path / "clean", 3, 40, 56, seed=3)
    recipe = replace(RECIPES["taylor-derain"], patch_size=32, data=DataConfig(clean=(str(tmp_path / "clean"),)))
    needed = 3 * 40 * 56 * 3
    monkeypatch.setattr(sources, "available_memory_bytes", lambda: 10 * needed)
    assert prepare_data(recipe, "auto", tmp_path / "run").summary["pool"] == "memory"
    monkeypatch.setattr(sources, "available_memory_bytes", lambda: int(1.5 * needed))
    assert prepare_data(recipe, "auto", tmp_path / "run").summary["pool"] == "disk"
    with pytest.raises(ValueError, match="--pool disk maps them from a file"):
        monkeypatch.setattr(sources, "available_memory_bytes", lambda: needed // 2)
        prepare_data(recipe, "memory", tmp_path / "run")
