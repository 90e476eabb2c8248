"""The preprocessed-frame cache on real files: identical to decoding, invalidated by changes, self-repairing,
safe under concurrent builders, and used by the training datasets and the CLI."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sonokit.data import ImageDataset
from sonokit.data import cache as cache_mod
from sonokit.data.cache import PreprocessedCache, summarize, transient
from sonokit.data.frames import LetterboxRecipe, read_image
from sonokit.errors import InputError
from sonokit.io import write_video
from sonokit.preprocess.resize import letterbox, to_channels


def _noise_video(path: Path, n: int = 12, seed: int = 0, shape: tuple[int, int] = (48, 64)) -> Path:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(n, *shape, 3), dtype=np.uint8)
    frames = cv2.GaussianBlur(frames.reshape(n * shape[0], shape[1], 3), (5, 5), 0).reshape(n, *shape, 3)
    write_video(path, frames, fps=25)
    return path


def _png(path: Path, value: int, shape: tuple[int, int] = (40, 70)) -> Path:
    image = np.zeros((*shape, 3), np.uint8)
    image[5:-5, 10:-10] = (value, value // 2, 255 - value)
    assert cv2.imwrite(str(path), image)
    return path


def _entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npy"))


def test_cached_frames_equal_direct_decoding(tmp_path: Path) -> None:
    video, image = _noise_video(tmp_path / "clip.avi"), _png(tmp_path / "still.png", 200)
    recipe = LetterboxRecipe(32, 1)
    disk = PreprocessedCache(recipe, root=tmp_path / "cache")
    memory = PreprocessedCache(recipe, root=None)
    for path, n in ((video, 12), (image, 1)):
        direct = np.stack([letterbox(to_channels(read_image(path, i), 1), 32) for i in range(n)])
        assert np.array_equal(np.asarray(disk.frames(path)), direct)
        assert np.array_equal(memory.frames(path), direct)
    assert isinstance(disk.frames(video), np.memmap) and disk.builds == 2
    # a second cache (a new epoch, fold or run) maps the same entries: no decode
    again = PreprocessedCache(recipe, root=tmp_path / "cache")
    assert np.array_equal(np.asarray(again.frame(video, 7)), np.asarray(disk.frame(video, 7)))
    assert again.builds == 0 and again.hits == 1
    with pytest.raises(InputError, match=r"clip.avi: frame 12 out of range"):
        again.frame(video, 12)


def test_image_dataset_items_identical_cached_and_uncached(tmp_path: Path) -> None:
    video, image = _noise_video(tmp_path / "v.avi", n=5), _png(tmp_path / "p.png", 90)
    df = pd.DataFrame(
        {"path": [str(video)] * 5 + [str(image)], "frame": [0, 1, 2, 3, 4, 0], "label": ["a"] * 6}
    )
    for channels in (1, 3):
        cached = ImageDataset(
            df,
            ["a"],
            24,
            channels,
            cache=PreprocessedCache(LetterboxRecipe(24, channels), root=tmp_path / "c"),
        )
        plain = ImageDataset(
            df, ["a"], 24, channels, cache=PreprocessedCache(LetterboxRecipe(24, channels), root=None)
        )
        for i in range(len(df)):
            assert np.array_equal(cached.load(i), plain.load(i))
            assert cached.load(i).flags.writeable  # callers may draw on it; the map itself stays read-only


def test_changed_file_or_parameters_make_a_new_entry(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    video = _noise_video(tmp_path / "clip.avi", seed=1)
    first = np.array(PreprocessedCache(LetterboxRecipe(32), root=root).frames(video))
    _noise_video(video, seed=2)  # same name and size, new content
    os.utime(video, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = PreprocessedCache(LetterboxRecipe(32), root=root)
    assert not np.array_equal(np.asarray(second.frames(video)), first) and second.builds == 1
    bigger = PreprocessedCache(LetterboxRecipe(40), root=root)
    assert bigger.frames(video).shape == (12, 40, 40, 1) and bigger.builds == 1
    assert bigger.recipe_dir != second.recipe_dir
    assert sum(r["entries"] for r in summarize(root).recipes) == 3


def test_truncated_or_corrupt_entry_is_rebuilt_never_read(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    video = _noise_video(tmp_path / "clip.avi")
    good = np.array(PreprocessedCache(LetterboxRecipe(32), root=root).frames(video))
    (npy,) = _entries(root)

    with open(npy, "r+b") as f:  # a half-written file (e.g. a copy killed midway)
        f.truncate(npy.stat().st_size // 2)
    fresh = PreprocessedCache(LetterboxRecipe(32), root=root)
    assert np.array_equal(np.asarray(fresh.frames(video)), good) and fresh.builds == 1

    data = bytearray(npy.read_bytes())  # same size, flipped bytes in the pixels
    data[-100:] = bytes(255 - b for b in data[-100:])
    npy.write_bytes(bytes(data))
    cache_mod._VERIFIED.clear()  # as in a new process: the checksum is checked once per process
    fresh = PreprocessedCache(LetterboxRecipe(32), root=root)
    assert np.array_equal(np.asarray(fresh.frames(video)), good) and fresh.builds == 1
    assert len(_entries(root)) == 1 and not list(root.rglob(".build.*"))


def _build_in_child(args: tuple[str, str, int]) -> tuple[int, bytes]:
    path, root, size = args
    cache = PreprocessedCache(LetterboxRecipe(size), root=Path(root))
    frames = cache.frames(path)
    return cache.builds, np.asarray(frames).tobytes()


def test_two_processes_building_one_entry_do_not_corrupt_it(tmp_path: Path) -> None:
    video = _noise_video(tmp_path / "clip.avi", n=60, shape=(240, 320))
    root = tmp_path / "cache"
    with mp.get_context("spawn").Pool(3) as pool:
        results = pool.map(_build_in_child, [(str(video), str(root), 64)] * 3)
    assert sum(builds for builds, _ in results) == 1  # the lock: one decode, the others waited and mapped it
    assert len({data for _, data in results}) == 1
    reread = PreprocessedCache(LetterboxRecipe(64), root=root)
    assert np.asarray(reread.frames(video)).tobytes() == results[0][1] and reread.builds == 0
    assert len(_entries(root)) == 1 and not list(root.rglob(".build.*"))


def test_bad_file_names_the_file_and_leaves_no_entry(tmp_path: Path) -> None:
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF" + b"\0" * 64)
    root = tmp_path / "cache"
    with pytest.raises(InputError, match="broken.avi"):
        PreprocessedCache(LetterboxRecipe(32), root=root).frames(bad)
    with pytest.raises(InputError, match="missing.png: file not found"):
        PreprocessedCache(LetterboxRecipe(32), root=root).frames(tmp_path / "missing.png")
    assert not _entries(root) and not list(root.rglob(".build.*"))


def test_transient_and_off_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = _noise_video(tmp_path / "clip.avi", n=3)
    root = tmp_path / "cache"
    monkeypatch.setenv("SONOKIT_CACHE", str(root))
    cache = PreprocessedCache(LetterboxRecipe(16))
    with transient():
        assert cache.frames(video).shape == (3, 16, 16, 1)
    assert not root.exists()
    monkeypatch.setenv("SONOKIT_CACHE", "off")
    assert PreprocessedCache(LetterboxRecipe(16)).frames(video).shape == (3, 16, 16, 1)
    assert not root.exists()


def test_echo_store_serves_prepared_cines_from_the_cache(
    tmp_path: Path, ybr_dicom: Path, monkeypatch
) -> None:
    from sonokit.echo.frames import PreparedStore, read_prepared

    monkeypatch.setenv("SONOKIT_CACHE", str(tmp_path / "cache"))
    direct, _ = read_prepared(ybr_dicom, 112)  # a real DICOM cine: sector crop, resize, gray
    first = PreparedStore(112).get(ybr_dicom)
    store = PreparedStore(112)
    cached = store.get(ybr_dicom)
    assert store.cache.builds == 0 and isinstance(cached.frames, np.memmap)
    assert np.array_equal(np.asarray(cached.frames), direct.frames) and np.array_equal(
        first.frames, direct.frames
    )
    assert cached.transform == direct.transform and cached.fps == pytest.approx(direct.fps)
    assert (
        cached.spacing_mm == pytest.approx(direct.spacing_mm)
        and cached.original_shape == direct.original_shape
    )


def test_cache_cli_info_and_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sonokit.cli.main import app

    monkeypatch.setenv("SONOKIT_CACHE", str(tmp_path / "cache"))
    PreprocessedCache(LetterboxRecipe(32)).frames(_noise_video(tmp_path / "clip.avi"))
    runner = CliRunner()
    out = runner.invoke(app, ["cache", "info"])
    assert (
        out.exit_code == 0 and "letterbox:size=32:channels=1" in out.output and "total: 1 files" in out.output
    )
    assert "clip.avi" not in out.output
    out = runner.invoke(app, ["cache", "clear"])
    assert out.exit_code == 0 and "freed" in out.output
    assert summarize(tmp_path / "cache").entries == 0 and not _entries(tmp_path / "cache")


def test_an_unwritable_cache_folder_falls_back_to_memory(tmp_path: Path, caplog) -> None:
    video = _noise_video(tmp_path / "clip.avi", n=4)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    cache = PreprocessedCache(LetterboxRecipe(16), root=blocker / "cache")
    with caplog.at_level("WARNING"):
        frames = cache.frames(video)
    assert frames.shape == (4, 16, 16, 1) and not isinstance(frames, np.memmap) and not cache.on_disk
    assert "preprocessing in memory" in caplog.text
    direct = PreprocessedCache(LetterboxRecipe(16), root=None).frames(video)
    assert np.array_equal(frames, direct)


def test_echo_entry_of_a_long_scanner_sized_cine_streams_and_equals_read_prepared(tmp_path: Path) -> None:
    import dataclasses

    from sonokit.echo.frames import DETECT_FRAMES, EchoRecipe, read_prepared
    from sonokit.synth.echo import render_echo, sample_echo_case

    case = dataclasses.replace(sample_echo_case(seed=0, index=1), n_frames=DETECT_FRAMES + 36)
    video = write_video(tmp_path / "long.avi", render_echo(case, 160).frames, fps=50.0)  # needs a sector crop
    direct, _ = read_prepared(video, 64)
    cache = PreprocessedCache(EchoRecipe(64), root=tmp_path / "cache")
    entry = cache.entry(video)
    assert entry.frames.shape[0] == DETECT_FRAMES + 36 and entry.frames.shape[1:3] == (64, 64)
    assert np.array_equal(np.asarray(entry.frames), direct.frames)
    assert entry.meta["transform"][:6] == [
        direct.transform.x0, direct.transform.y0, direct.transform.scale,
        direct.transform.pad_x, direct.transform.pad_y, direct.transform.size,
    ]  # fmt: skip
