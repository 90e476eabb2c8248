"""Hostile input, as an attacker or an unlucky site would produce it: crafted files, names that are not UTF-8,
full disks (RLIMIT_FSIZE with SIGXFSZ ignored: every write past the limit fails with a real EFBIG), killed
processes and identifiers in names. Each case checks the clean behaviour: one line naming the file and the
reason, a non-zero exit, no half-written or orphaned files or processes, and the good files of the batch done."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

ENV = {**os.environ, "SONOKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
BAD = b"\xff\xfe"  # bytes that are not UTF-8; Linux allows them in names


def _limit_file_size(nbytes: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return apply


def sonokit(*args, limit: int | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the CLI as a user does; arguments may be bytes (names that are not UTF-8)."""
    argv = [os.fsencode(sys.executable), b"-m", b"sonokit", *(os.fsencode(a) for a in args)]
    proc = subprocess.run(
        argv,
        env=ENV,
        capture_output=True,
        timeout=timeout,
        preexec_fn=_limit_file_size(limit) if limit else None,
    )
    proc.out = proc.stdout.decode("utf-8", "backslashreplace")  # type: ignore[attr-defined]
    proc.err = proc.stderr.decode("utf-8", "backslashreplace")  # type: ignore[attr-defined]
    return proc


def _clean_errors(proc, n: int | None = None) -> list[str]:
    """stderr is only `error:` lines (and log lines), never a traceback."""
    assert "Traceback" not in proc.err, proc.err
    errors = [line for line in proc.err.splitlines() if line.startswith("error:")]
    if n is not None:
        assert len(errors) == n, proc.err
    return errors


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files a writer left behind (sonokit's temporary names start with a dot)."""
    return [p for p in Path(folder).rglob(".*") if p.is_file()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A tiny trained fetal-plane run and its images."""
    from test_batch_predict import train_tiny_run

    root = tmp_path_factory.mktemp("hostile")
    run_dir, data = train_tiny_run(root)
    return {"root": root, "run": run_dir, "images": sorted((data / "Images").glob("*.png"))}


# ------------------------------------------------------------------------------------ 1. predict --resume


@pytest.mark.slow
def test_predict_resume_after_a_full_disk_writes_every_row(tiny, ybr_dicom) -> None:
    root = tiny["root"]
    inputs = root / "resume_in"
    inputs.mkdir()
    for p in tiny["images"][:10]:
        shutil.copy(p, inputs / p.name)
    shutil.copy(ybr_dicom, inputs / "zz_cine.dcm")  # last: its 31 rows are in the last write
    full = root / "full.csv"
    args = ["predict", tiny["run"], inputs, "--batch-size", "4", "--device", "cpu"]
    assert sonokit(*args, "--out", full).returncode == 0
    size = full.stat().st_size

    out = root / "resumed.csv"
    proc = sonokit(*args, "--out", out, limit=size - 300)  # the disk fills half-way through the cine's rows
    assert proc.returncode != 0
    (line,) = _clean_errors(proc, 1)
    assert "resumed.csv.partial" in line and "File too large" in line and "--resume" in line
    assert not out.exists()

    proc = sonokit(*args, "--out", out, "--resume")  # space is back
    assert proc.returncode == 0, proc.err
    a, b = (pd.read_csv(p, dtype=str).sort_values(["path", "frame"]) for p in (full, out))
    assert len(b) == len(a) == 10 + 30 + 1 and set(b["path"]) == set(a["path"])
    assert (b.loc[b["path"].str.endswith("zz_cine.dcm"), "frame"] == "all").sum() == 1
    assert not b.duplicated(["path", "frame"]).any()
    assert not list(root.glob("resumed.csv.*"))  # no partial file, no committed-length file


# --------------------------------------------------------------------------- 2. declared sizes, big frames


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny real PNG whose IHDR declares width x height (CRC fixed): 1 KB on disk, gigabytes decoded."""
    import cv2

    ok, data = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    data = bytearray(data.tobytes())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = crc.to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def _dicom_declaring(path: Path, side: int) -> Path:
    """An RLE Lossless DICOM declaring one side x side frame, with a tiny pixel fragment."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless, UltrasoundImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = UltrasoundImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 8, 8, 7
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_absurd_declared_sizes_are_refused_before_decoding(tmp_path: Path, ybr_dicom: Path) -> None:
    from sonokit.errors import InputError
    from sonokit.io import open_cine

    png = _png_declaring(tmp_path / "huge.png", 20000, 20000)
    dcm = _dicom_declaring(tmp_path / "huge.dcm", 32768)
    for path in (png, dcm):
        t = time.perf_counter()
        with pytest.raises(InputError, match="above the limit|too many pixels") as info:
            open_cine(path)
        assert time.perf_counter() - t < 2.0 and str(path) in str(info.value)
    shutil.copy(ybr_dicom, tmp_path / "good.dcm")
    t = time.perf_counter()
    proc = sonokit("anonymize", tmp_path / "good.dcm", dcm, "--out", tmp_path / "anon")
    assert time.perf_counter() - t < 60 and proc.returncode == 1
    (line,) = _clean_errors(proc, 1)
    assert line.startswith(f"error: {dcm}: declares 32768 x 32768")
    assert len(list((tmp_path / "anon").rglob("*.dcm"))) == 1  # the good file of the batch is done


def test_app_upload_of_a_decompression_bomb_is_bounded(tmp_path: Path) -> None:
    from sonokit.app.study import Options, Selection, analyse_upload, load_models

    data = _png_declaring(tmp_path / "bomb.png", 20000, 20000).read_bytes()
    t = time.perf_counter()
    r = analyse_upload("bomb.png", data, load_models(Selection()), Options())
    assert time.perf_counter() - t < 5.0
    assert r.error is not None and "bomb.png" in r.error and "limit" in r.error
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 3 * 2**20  # KiB: never near the 3.9 GB seen


def test_sector_detection_on_a_huge_frame_is_bounded_and_the_same(ybr_dicom: Path) -> None:
    import cv2

    from sonokit.io import open_cine
    from sonokit.preprocess import detect_sector

    with open_cine(ybr_dicom) as cine:
        frames = cine.read()[::2].max(axis=-1)  # 15 grey frames: what detection looks at
    small = detect_sector(frames)
    big = np.stack([cv2.resize(f, (3200, 2400), interpolation=cv2.INTER_NEAREST) for f in frames])
    t = time.perf_counter()
    geo = detect_sector(big)
    assert time.perf_counter() - t < 10.0
    expected = cv2.resize(small.mask.view(np.uint8), (3200, 2400), interpolation=cv2.INTER_NEAREST) > 0
    iou = np.count_nonzero(geo.mask & expected) / np.count_nonzero(geo.mask | expected)
    assert geo.kind == small.kind and iou > 0.95


# ------------------------------------------------------------------------------ 3. names that are not UTF-8


@pytest.mark.slow
def test_names_that_are_not_utf8_work_in_every_command(tiny, tmp_path: Path, ybr_dicom: Path) -> None:
    from sonokit.io import write_video

    folder = Path(os.fsdecode(os.fsencode(tmp_path / "in") + BAD))
    folder.mkdir()
    png = Path(os.fsdecode(os.fsencode(folder / "img") + BAD + b".png"))
    shutil.copy(tiny["images"][0], png)
    dcm = Path(os.fsdecode(os.fsencode(folder / "cine") + BAD + b".dcm"))
    shutil.copy(ybr_dicom, dcm)
    avi = Path(os.fsdecode(os.fsencode(folder / "clip") + BAD + b".avi"))
    with pydicom.dcmread(ybr_dicom) as ds:
        write_video(avi, ds.pixel_array[:, :, :, 0], fps=25.0)  # OpenCV writes through an ASCII name
    broken = Path(os.fsdecode(os.fsencode(folder / "broken") + BAD + b".png"))
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")

    proc = sonokit("info", png, dcm, avi, broken)
    assert proc.returncode == 1
    (line,) = _clean_errors(proc, 1)
    assert "broken\\xff\\xfe.png: not a readable image" in line  # printable, names the file

    out = tmp_path / "conv"
    proc = sonokit("convert", folder, "--out", out)
    assert proc.returncode == 1
    assert "broken\\xff\\xfe.png" in _clean_errors(proc, 1)[0]
    assert proc.err.strip().splitlines() == _clean_errors(proc)  # OpenCV's own warnings are off
    assert sorted(p.name for p in out.rglob("*.*")) == [
        "FileList.csv",
        "cine\\xff\\xfe.avi",
        "cine\\xff\\xfe.avi.json",  # the units sidecars
        "clip\\xff\\xfe.avi",
        "clip\\xff\\xfe.avi.json",
        "img\\xff\\xfe.png",
        "img\\xff\\xfe.png.json",
    ]

    proc = sonokit("anonymize", folder, "--out", tmp_path / "anon")
    assert proc.returncode == 0, proc.err
    assert len(list((tmp_path / "anon").rglob("*.dcm"))) == 1

    pred = tmp_path / "pred.csv"
    proc = sonokit("predict", tiny["run"], png, dcm, broken, "--out", pred, "--device", "cpu")
    assert proc.returncode == 1  # per-file errors exit 1, as in every command
    (line,) = _clean_errors(proc, 1)
    assert "broken\\xff\\xfe.png" in line
    from sonokit.utils.paths import printable

    table = pd.read_csv(pred, dtype=str)  # valid UTF-8: odd bytes are written as \xNN
    assert set(table["path"]) == {printable(png), printable(dcm)} and len(table) == 1 + 30 + 1
    proc = sonokit("predict", tiny["run"], png, dcm, "--out", pred, "--device", "cpu", "--resume")
    assert proc.returncode == 0 and "2 files already predicted" in proc.out


def test_long_names_fit_the_temporary_name(tmp_path: Path) -> None:
    from sonokit.io import open_cine, write_image

    path = tmp_path / ("n" * 250 + ".png")  # 254 bytes: the most a name may have with its suffix
    write_image(path, np.full((16, 16), 7, np.uint8))
    assert open_cine(path).frame(0).max() == 7 and not _leftovers(tmp_path)


# ----------------------------------------------------------------------------------- 4. convert, full disk


def test_convert_on_a_full_disk_leaves_no_truncated_video(tmp_path: Path, ybr_dicom: Path, tiny) -> None:
    src = tmp_path / "study"
    src.mkdir()
    shutil.copy(ybr_dicom, src / "cine.dcm")
    still = pydicom.dcmread(ybr_dicom)
    still.decompress()
    frame = still.pixel_array[0]
    out = tmp_path / "out"
    proc = sonokit("convert", src, "--out", out, "--size", "112", limit=8_000)  # the AVI needs ~40 KB
    assert proc.returncode == 1
    (line,) = _clean_errors(proc, 1)
    assert line.startswith(f"error: {src / 'cine.dcm'}:") and "disk full" in line
    assert not list(out.rglob("*.avi")) and not _leftovers(out) and not (out / "FileList.csv").exists()

    # a study folder of a cine and a still converts completely: the still becomes a PNG
    from sonokit.io import write_image

    write_image(src / "still.png", frame)
    proc = sonokit("convert", src, "--out", out)
    assert proc.returncode == 0, proc.err
    assert (out / "Videos" / "cine.avi").is_file() and (out / "Images" / "still.png").is_file()
    assert list(pd.read_csv(out / "FileList.csv")["FileName"]) == ["cine"]


# ----------------------------------------------------------------------------------- 5. identifiers in names


def test_anonymize_gives_neutral_names_and_removes_coded_free_text(tmp_path: Path, ybr_dicom: Path) -> None:
    from pydicom.dataset import Dataset

    study = tmp_path / "in" / "PLNTFNAME_ALICE_7781"
    study.mkdir(parents=True)
    ds = pydicom.dcmread(ybr_dicom)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "X1", "99LOCAL", "ALICE KNEE CASE"
    ds.ProcedureCodeSequence = [code]
    ds.FrameOfReferenceUID = "1.2.840.10008.7781.4242"  # under the standard root, but not a standard UID
    ds.save_as(study / "PLNTFNAME_ALICE_7781.dcm")

    out = tmp_path / "share" / "anon"
    proc = sonokit("-v", "anonymize", tmp_path / "in", "--out", out)  # -v: debug logs too
    assert proc.returncode == 0, proc.err
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["deid_report.csv", "study_001/image_0001.dcm"]  # the report names outputs only
    files = files[1:]
    assert "ALICE" not in (out / "deid_report.csv").read_text()
    mapping = tmp_path / "share" / "anon_names.csv"  # beside the output folder, not in it
    assert pd.read_csv(mapping).to_dict("records") == [
        {"output": "study_001/image_0001.dcm", "source": str(study / "PLNTFNAME_ALICE_7781.dcm")}
    ]
    data = (out / files[0]).read_bytes()
    # (not b"7781" alone: four digits turn up by chance in random UIDs and compressed pixels)
    for secret in (b"ALICE", b"PLNTFNAME", b"10008.7781.4242"):
        assert secret not in data
    assert str(mapping) in proc.out and "ALICE" not in proc.out + proc.err

    proc = sonokit("anonymize", tmp_path / "in", "--out", tmp_path / "kept", "--keep-names")
    assert (
        proc.returncode == 0
        and (tmp_path / "kept" / "PLNTFNAME_ALICE_7781" / "PLNTFNAME_ALICE_7781.dcm").is_file()
    )


def test_app_hides_names_escapes_formulas_and_confines_the_runs_folder(tmp_path: Path) -> None:
    from sonokit.app.report import predictions_csv
    from sonokit.app.runs import confine
    from sonokit.app.study import StudyResult

    csv = predictions_csv([StudyResult(name='=HYPERLINK("http://x","y")', error="bad")]).decode()
    assert "'=HYPERLINK" in csv and "\n=HYPERLINK" not in csv
    (tmp_path / "runs" / "a").mkdir(parents=True)
    assert confine(tmp_path / "runs" / "a", tmp_path / "runs") == (str(tmp_path / "runs" / "a"), True)
    assert confine("/", tmp_path / "runs") == (str(tmp_path / "runs"), False)
    assert confine(tmp_path / "runs" / ".." / "..", tmp_path / "runs")[1] is False
    main = (Path(__file__).parents[1] / "src/sonokit/app/main.py").read_text()
    assert 'st.toggle("Hide file names", value=True' in main


# ------------------------------------------------------------------------------------------------ also


def test_deflated_dicom_and_infinite_spacing(tmp_path: Path, ybr_dicom: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from sonokit.io import open_cine

    ds = pydicom.dcmread(ybr_dicom)
    ds.decompress()
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.PhysicalUnitsXDirection = 1, 1, 3
    region.PhysicalUnitsYDirection = 3
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 100, 100
    region.PhysicalDeltaX, region.PhysicalDeltaY = float("inf"), 0.03
    ds.SequenceOfUltrasoundRegions = [region]
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    with open_cine(tmp_path / "deflated.dcm") as cine:
        assert cine.n_frames == 30 and cine.frame(29).shape == (240, 320, 3)
        assert cine.spacing_mm is None
    proc = sonokit("info", tmp_path / "deflated.dcm")
    assert proc.returncode == 0 and "spacing       unknown" in proc.out


def test_decoder_failure_is_one_line_without_pydicom_traceback(tmp_path: Path, ybr_dicom: Path) -> None:
    data = bytearray(ybr_dicom.read_bytes())
    end = len(data)
    data[end - 20000 : end - 100] = b"\x00" * (20000 - 100)  # the last frames' JPEG data destroyed
    bad = tmp_path / "damaged.dcm"
    bad.write_bytes(bytes(data))
    proc = sonokit("info", bad)
    assert proc.returncode == 1
    assert proc.err.strip().splitlines() == _clean_errors(proc, 1)  # nothing else on stderr


@pytest.mark.slow
def test_unwritable_output_folder_is_one_line(tmp_path: Path, tiny) -> None:
    # The tests may run as root, which writes into read-only folders; a "folder" that is a file fails for all.
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    proc = sonokit("predict", tiny["run"], tiny["images"][0], "--out", blocker / "p.csv", "--device", "cpu")
    assert proc.returncode != 0
    (line,) = _clean_errors(proc, 1)
    assert "not_a_folder" in line  # "File exists" or "Not a directory", from the first mkdir or open
    proc = sonokit("synth", "fetal-planes", "--out", blocker / "s", "--n", "4")
    assert proc.returncode != 0 and "not_a_folder" in _clean_errors(proc, 1)[0]


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_dataloader_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time, torch\n"
        "from sonokit.predict.stream import _worker_init\n"
        "class Slow(torch.utils.data.Dataset):\n"
        "    def __len__(self): return 10**6\n"
        "    def __getitem__(self, i): return os.getpid()\n"
        "dl = torch.utils.data.DataLoader(Slow(), batch_size=None, num_workers=2, worker_init_fn=_worker_init)\n"
        "it = iter(dl)\n"
        "pids = {next(it) for _ in range(20)}\n"
        "print(' '.join(map(str, sorted(pids))), flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2
    finally:
        parent.kill()
        parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_running(p) for p in workers):
        time.sleep(0.1)
    alive = [p for p in workers if _running(p)]
    for p in alive:  # clean up before failing
        os.kill(p, signal.SIGKILL)
    assert not alive


# ---------------------------------------------------------------------------------- 6. train, full disk


def _train_args(tiny) -> list:
    """The tiny fixture's own training, from the command line."""
    root = tiny["root"]
    return ["train", "fetal-plane", "--data", root / "fp", "--config", root / "tiny.yaml"] + [
        "--epochs", "1", "--size", "64", "--batch-size", "8", "--device", "cpu",
    ]  # fmt: skip


@pytest.mark.slow
def test_train_on_a_full_disk_then_resume_or_rerun(tiny, tmp_path: Path) -> None:
    weights = (tiny["run"] / "model.safetensors").stat().st_size
    checkpoint = (tiny["run"] / "checkpoint_last.pt").stat().st_size
    assert weights < checkpoint  # the checkpoint adds the optimizer state
    run = tmp_path / "run"
    proc = sonokit(*_train_args(tiny), "--out", run, limit=(weights + checkpoint) // 2)
    assert proc.returncode != 0
    (line,) = _clean_errors(proc, 1)
    assert "checkpoint_last.pt" in line and "File too large" in line, line
    # the weights of epoch 1 were written, its checkpoint was not: the remains of a run stopped in epoch 1
    assert (run / "model.safetensors").is_file() and not (run / "checkpoint_last.pt").exists()
    assert not _leftovers(run)
    shutil.copytree(run, tmp_path / "rerun")

    proc = sonokit("train", "fetal-plane", "--out", run, "--resume", "--device", "cpu")  # space is back
    assert proc.returncode == 0, proc.err
    assert "starting over" in proc.err
    proc = sonokit(*_train_args(tiny), "--out", tmp_path / "rerun")  # the same command again
    assert proc.returncode == 0, proc.err
    for folder in (run, tmp_path / "rerun"):
        assert (folder / "model_card.json").is_file() and (folder / "metrics_test.json").is_file()
        assert len(pd.read_csv(folder / "log.csv")) == 2 and not _leftovers(folder)
    proc = sonokit(*_train_args(tiny), "--out", run)  # a finished run is still never overwritten
    assert proc.returncode == 2 and "already holds a run" in _clean_errors(proc, 1)[0]


@pytest.mark.slow
def test_a_killed_checkpoint_write_leaves_nothing_that_resume_reads(tiny, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    before = (run / "checkpoint_last.pt").read_bytes()
    script = tmp_path / "writer.py"
    script.write_text(
        "import sys, time, torch\n"
        "from sonokit.core.checkpoint import save_checkpoint\n"
        "class Stall:\n"
        "    def __reduce__(self):\n"  # pickling stops here, half-way through the write
        "        print('writing', flush=True)\n"
        "        time.sleep(600)\n"
        "        return (int, ())\n"
        "save_checkpoint(sys.argv[1], {'model': torch.zeros(4096), 'stall': Stall()})\n"
    )
    writer = subprocess.Popen(
        [sys.executable, str(script), str(run / "checkpoint_last.pt")],
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        writer.kill()  # SIGKILL: no finally, no clean-up
        writer.wait()
    (temp,) = _leftovers(run)
    assert temp.name.startswith(".checkpoint_last.") and temp.suffix == ".pt"
    assert (run / "checkpoint_last.pt").read_bytes() == before  # the kill left the last checkpoint intact

    proc = sonokit("train", "fetal-plane", "--out", run, "--resume", "--device", "cpu")
    assert proc.returncode == 0, proc.err
    assert "removed 1 temporary file" in proc.err
    assert not _leftovers(run) and (run / "metrics_test.json").is_file()


# ------------------------------------------------------------------------------ 7. duplicated table rows


def _table(folder: Path, rows: list[str], header: str = "path,label,group") -> Path:
    from sonokit.io import write_image

    folder.mkdir(exist_ok=True)
    for name in {r.split(",")[0] for r in rows}:
        if not (folder / name).exists():
            write_image(folder / name, np.full((16, 16), 9, np.uint8))
    csv = folder / "table.csv"
    csv.write_text("\n".join([header, *rows]) + "\n")
    return csv


def test_duplicated_rows_are_dropped_with_one_warning(tmp_path: Path, caplog) -> None:
    from sonokit.data import load_index

    rows = ["a.png,x,p1", "b.png,y,p2", "a.png,x,p1", "./a.png,x,p1", "c.png,y,p3"]
    csv = _table(tmp_path, rows)
    with caplog.at_level("WARNING", logger="sonokit"):
        index = load_index(csv)
    assert sorted(Path(p).name for p in index["path"]) == ["a.png", "b.png", "c.png"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning == f"{csv}: 2 duplicated rows dropped (CSV lines 4, 5)"


def test_one_file_under_two_groups_or_labels_is_refused(tmp_path: Path, caplog) -> None:
    from sonokit.data import load_index, read_boxes
    from sonokit.errors import InputError

    two_groups = _table(tmp_path / "g", ["a.png,x,p1", "b.png,y,p2", "a.png,x,p9", "c.png,x,p3"])
    with pytest.raises(InputError, match=r"1 file listed under more than one group .*a\.png") as info:
        load_index(two_groups)
    assert str(two_groups) in str(info.value)
    two_labels = _table(tmp_path / "l", ["a.png,x,p1", "a.png,y,p1", "b.png,y,p2"])
    with pytest.raises(InputError, match="more than one label"):
        load_index(two_labels)
    with caplog.at_level("WARNING", logger="sonokit"):
        kept = load_index(two_labels, conflicting_rows="keep")
    assert len(kept) == 3 and "kept: conflicting_rows=keep" in caplog.text
    # legitimate repeats: per-frame labels of one cine, several boxes of different labels on one image
    frames = _table(tmp_path / "f", ["a.png,x,p1,0", "a.png,y,p1,1"], header="path,label,group,frame")
    assert len(load_index(frames)) == 2
    boxes = _table(tmp_path / "b", ["a.png,1,1,5,5,x", "a.png,6,6,9,9,y"], header="path,x1,y1,x2,y2,label")
    assert len(read_boxes(boxes)) == 2


@pytest.mark.slow
def test_train_on_a_table_with_one_file_under_two_groups_is_one_line(tmp_path: Path) -> None:
    two_groups = _table(tmp_path, ["a.png,x,p1", "b.png,y,p2", "a.png,x,p9", "c.png,x,p3"])
    proc = sonokit("train", "classify", "--data", two_groups, "--out", tmp_path / "run", "--device", "cpu")
    assert proc.returncode == 2 and not (tmp_path / "run").exists()
    (line,) = _clean_errors(proc, 1)
    assert line.startswith(f"error: {two_groups}: ") and "a.png" in line


# ------------------------------------------------------------------------------------ 8. a 1-frame video


def test_a_one_frame_avi_predicts_as_one_frame(tiny, tmp_path: Path) -> None:
    import cv2

    from sonokit.io import open_cine, write_video
    from sonokit.predict.predictor import predict_to_csv

    frame = cv2.imread(str(tiny["images"][0]), cv2.IMREAD_GRAYSCALE)
    avi = write_video(tmp_path / "single.avi", frame[None], fps=25.0)
    with open_cine(avi) as cine:
        assert cine.n_frames == 1 and cine.read().shape[0] == 1
    res = predict_to_csv(tiny["run"], [avi], tmp_path / "p.csv", device="cpu")
    assert not res.errors, res.errors
    table = pd.read_csv(tmp_path / "p.csv", dtype=str)
    assert list(table["frame"]) == ["0"] and table["y_pred"].notna().all()


# --------------------------------------------------------------------------- 9. the app, session ended


def test_app_analysis_stops_when_the_session_ends(tiny, tmp_path: Path, monkeypatch) -> None:
    import tempfile

    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    from sonokit.app.study import Options, Selection, analyse_upload, load_models

    models = load_models(Selection(classifiers=(str(tiny["run"]),)), "cpu")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the upload's private folder goes
    name = tiny["run"].name
    data = tiny["images"][0].read_bytes()
    options = Options(gradcam=False, similar=False)
    stages: list[str] = []
    result = analyse_upload("a.png", data, models, options, stages.append)
    assert stages == ["reading", name] and len(result.classifications) == 1

    def session_ended(stage: str) -> None:  # what the page's next Streamlit call raises after a disconnect
        stages.append(stage)
        assert list(tmp_path.glob("sonokit-app-*"))  # the upload is on disk while it is analysed
        if stage == name:
            raise StopException()

    stages.clear()
    with pytest.raises(StopException):
        analyse_upload("a.png", data, models, options, session_ended)
    assert stages == ["reading", name] and not list(tmp_path.glob("sonokit-app-*"))  # stopped, deleted
    main = (Path(__file__).parents[1] / "src/sonokit/app/main.py").read_text()
    assert "_cached_result(key, name, data, models, options, step)" in main


# ----------------------------------------------------------------------------------- 10. montage, names


def test_montage_of_a_folder_whose_name_is_not_utf8(tmp_path: Path) -> None:
    from sonokit.synth import make_dataset
    from sonokit.synth.montage import montage

    for kind, n in (("fetal-planes", 4), ("lus", 4)):
        folder = Path(os.fsdecode(os.fsencode(tmp_path / kind) + BAD))
        make_dataset(kind, folder, n=n, seed=0, size=48)
        out = montage(folder, folder / "sheet.png", n=n)
        assert out.stat().st_size > 0 and not _leftovers(folder)


# ------------------------------------------------------------------------------ 11. no names in the logs


def test_anonymize_logs_no_file_names(tmp_path: Path, ybr_dicom: Path, caplog) -> None:
    from sonokit.io.deid import anonymize_file

    src = tmp_path / "DOE_JOHN_1234567.dcm"
    shutil.copy(ybr_dicom, src)
    with caplog.at_level("DEBUG", logger="sonokit"):
        anonymize_file(src, tmp_path / "out" / "SMITH_ANNE_7654321.dcm")
    assert any(r.name == "sonokit.io.deid" for r in caplog.records)  # it does log, without names
    for secret in ("DOE", "1234567", "SMITH", "7654321"):
        assert secret not in caplog.text
