"""The web app driven headless (streamlit.testing AppTest) with tiny runs trained here, and once end to end:
`sonokit app` serving on a free localhost port, opened in headless Chromium, a cine uploaded, the EF read back."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "src" / "sonokit" / "app" / "main.py"
TIMEOUT = 120  # seconds: bound on every wait (one app run, server start, page result)
NONE = "(none)"


# ---------------------------------------------------------------------------------------------- fixtures


def _train(task: str, data: Path, out: Path, **overrides) -> Path:
    from sonokit.core.config import resolve_config
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    cls = get_task(task)
    values = {
        "data": str(data),
        "out": str(out),
        "epochs": 1,
        "n_boot": 10,
        "patience": 0,
        "seed": 0,
        **overrides,
    }
    return Path(train(resolve_config(task, overrides=values, task_defaults=cls.defaults)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Six one-epoch runs on tiny simulated data, with the real training engine (about 30 s of CPU)."""
    import importlib

    from sonokit.synth import make_dataset

    importlib.import_module("sonokit.quality.task")  # registers the quality task
    root = tmp_path_factory.mktemp("app")
    # the basic look, not the default full one: trained one epoch on five full-look cines, the EF model gave no
    # headline EF for the simulated video the headless-browser test uploads (NaN, the page showed n/a)
    echo = make_dataset("echo", root / "data" / "echo", n=5, size=48, realism="basic")
    fetal = make_dataset("fetal-planes", root / "data" / "fetal", n=18, size=64)
    psax = make_dataset("psax", root / "data" / "psax", n=12, size=64)
    runs = root / "runs"
    out = {
        "echo_data": echo,
        "fetal_data": fetal,
        "psax_data": psax,
        "runs": runs,
        "ef": _train("ef", echo, runs / "echo" / "ef", model="two-stream-tiny", size=48, batch_size=4),
        "lv": _train("lv-seg", echo, runs / "echo" / "lv", model="unet-tiny", size=48, batch_size=8,
                     options={"area_plots": 0}),
        "fetal": _train("fetal-plane", fetal, runs / "fetal", model="tinycnn", size=32, batch_size=16,
                        options={"gradcam_samples": 0}),
        "quality": _train("quality", fetal / "Images", runs / "quality", size=32, batch_size=16,
                          options={"gradcam_per_class": 0}),
        "avdet": _train("av-detect", psax, runs / "av" / "det", size=64, batch_size=8),
        "avcls": _train("av-calcification", psax, runs / "av" / "cls", size=32, batch_size=8),
    }  # fmt: skip
    from sonokit.uncertainty.report import run_uncertainty

    # the state `sonokit predict --uncertainty` and the page both score with; alpha 0.5, not the page's 0.1:
    # two validation images give a finite conformal quantile (a set that can leave classes out) from alpha 1/3
    run_uncertainty(out["fetal"], alpha=0.5, device="cpu", k=3, tsne_max=0)
    return out


def _labels(runs_root: Path) -> dict[str, str]:
    from sonokit.app.runs import discover_runs

    return {r.path.name: r.label for r in discover_runs(runs_root)}


def _app(trained, monkeypatch, ef=False, lv=False, cls=False, quality=False, av=False, **widgets):
    """An AppTest of the page with only the chosen systems selected (one run of the script to set them)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SONOKIT_RUNS", str(trained["runs"]))
    monkeypatch.setenv("SONOKIT_DEVICE", "cpu")
    labels = _labels(trained["runs"])
    at = AppTest.from_file(str(SCRIPT), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="pick_ef").set_value(labels["ef"] if ef else NONE)
    at.selectbox(key="pick_lv").set_value(labels["lv"] if lv else NONE)
    at.multiselect(key="pick_cls").set_value([labels["fetal"]] if cls else [])
    at.selectbox(key="pick_quality").set_value(labels["quality"] if quality else NONE)
    at.selectbox(key="pick_avdet").set_value(labels["det"] if av else NONE)
    at.selectbox(key="pick_avcls").set_value(labels["cls"] if av else NONE)
    for key, value in widgets.items():  # other sidebar widgets, by key
        widget = next(w for kind in ("slider", "selectbox", "number_input", "toggle") for w in at.get(kind)
                      if w.key == key)  # fmt: skip
        widget.set_value(value)
    return at


def _upload(at, *files: tuple[str, bytes]):
    at.file_uploader(key="uploads").set_value(
        [(name, data, "application/octet-stream") for name, data in files]
    )
    at.run()
    assert not at.exception, at.exception
    return at


def _texts(at) -> str:
    """Every visible string of the page: the haystack for 'is it shown' and 'is it never shown'."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "error", "warning", "success", "info", "subheader", "title"):
        parts += [str(e.value) for e in at.get(kind)]
    parts += [f"{m.label} {m.value}" for m in at.get("metric")]
    parts += [e.value.to_string() for e in at.dataframe]
    for img in at.image:
        parts += [str(c) for c in img.captions]
    return "\n".join(parts)


def _results(at):
    return list(at.session_state["results"].values())


# ---------------------------------------------------------------------------------------------- systems


def test_echo_page_shows_ef_class_contour_video_curve_and_downloads(trained, monkeypatch) -> None:
    from sonokit.app.report import predictions_csv, report_html
    from sonokit.app.study import Options
    from sonokit.clinical import get_thresholds
    from sonokit.echo.predict import load_echo_models, predict_study

    video = sorted((trained["echo_data"] / "Videos").glob("*.avi"))[0]
    expected = predict_study(video, load_echo_models([trained["ef"], trained["lv"]], "cpu"))
    at = _upload(_app(trained, monkeypatch, ef=True, lv=True), (video.name, video.read_bytes()))

    metrics = {m.label: m.value for m in at.get("metric")}
    assert metrics["EF"] == f"{expected['ef']:.1f} %"
    edv = expected["edv"]  # NaN (shown n/a) when the barely trained LV model outlines nothing at ED
    assert metrics["EDV (px^3)"] == (f"{edv:.1f}" if math.isfinite(edv) else "n/a")
    assert math.isfinite(edv) or "no LV" in expected["flags"]
    text = _texts(at)
    assert f"{expected['class']}" in text and "default thresholds" in text
    assert "validation videos are too few" in text  # 1 validation video: no conformal interval is claimed
    assert len(at.get("video")) == 1
    captions = [c for img in at.image for c in img.captions]
    assert any("LV area over time" in c for c in captions) and any("masked" in c for c in captions)
    assert [b.label for b in at.get("download_button")] == [
        "Download predictions (CSV)", "Download report (HTML)", "Download overlay video (WebM)",
    ]  # fmt: skip
    (result,) = _results(at)
    assert result.echo.overlay_webm[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a real WebM file
    assert result.echo.curve.shape == (expected["n_frames"],)
    csv = predictions_csv([result]).decode()
    assert csv.splitlines()[0].startswith("file,system,model") and f"{expected['ef']:.4f}"[:6] in csv
    assert "Echo: left-ventricular function" in report_html([result], Options())

    # another EF class preset re-labels the same EF
    at.selectbox(key="opt_thresholds").set_value("bse")
    at.run()
    assert get_thresholds("bse").classify(expected["ef"]) in _texts(at) and "bse thresholds" in _texts(at)

    # the headline EF can come from the LV model (Simpson's over beats) instead of the video model
    at.selectbox(key="opt_headline").set_value("LV model (Simpson's, mean of beats)")
    at.run()
    ef_lv = expected["ef_seg"]
    shown = {m.label: m.value for m in at.get("metric")}["EF"]
    if math.isfinite(ef_lv):
        assert shown == f"{ef_lv:.1f} %" and _results(at)[-1].echo.ef_source == "seg"
    else:  # the LV model measured nothing: the video model's EF is shown, with the reason
        assert shown == f"{expected['ef_video']:.1f} %" and _results(at)[-1].echo.ef_source == "video"
        assert "Check this answer: seg: " in _texts(at)


def test_echo_and_valve_pages_say_not_applicable_for_foreign_uploads(
    trained, monkeypatch, ybr_dicom, tmp_path
):
    """The echo models were trained on simulated cines: the real four-chamber DICOM is foreign to them, so no EF
    is given (each model's value stays in the CSV, flagged); a photograph gets no valve answer."""
    at = _upload(_app(trained, monkeypatch, ef=True, lv=True), (ybr_dicom.name, ybr_dicom.read_bytes()))
    text = _texts(at)
    assert (
        "Not applicable to " in text
        and "this cine does not look like their training data; no EF is given" in text
    )
    assert {m.label: m.value for m in at.get("metric")}["EF"] == "n/a"
    (result,) = _results(at)
    assert result.echo.ef_source == "" and len(result.echo.not_applicable) == 2
    assert math.isfinite(result.echo.row["ef_video"])  # the video model's own value is kept, flagged

    photo = _photo(tmp_path / "astronaut.png")
    at = _upload(_app(trained, monkeypatch, av=True), ("photo.png", photo.read_bytes()))
    assert "no frame looks like the detector's training data" in _texts(at)
    (result,) = _results(at)
    assert result.av.status == "not applicable" and result.av.crop is None


def test_classifier_page_with_quality_gate_first(trained, monkeypatch) -> None:
    from sonokit.predict import Predictor, load_run
    from sonokit.quality.gate import decide

    images = sorted((trained["fetal_data"] / "Images").glob("*.png"))
    clean = images[0]
    rng = np.random.default_rng(0)
    import cv2

    noisy_img = cv2.imread(str(images[1]), cv2.IMREAD_GRAYSCALE).astype(float)
    noisy_img = np.clip(noisy_img + rng.normal(0, 90, noisy_img.shape), 0, 255).astype(np.uint8)
    noisy = cv2.imencode(".png", noisy_img)[1].tobytes()

    at = _upload(_app(trained, monkeypatch, cls=True, quality=True), (clean.name, clean.read_bytes()),
                 ("noisy.png", noisy))  # fmt: skip

    run = load_run(trained["fetal"], "cpu")
    preds, errors = Predictor(run).table([clean])
    assert not errors
    predictions = [m.value for m in at.get("metric") if m.label == "Prediction"]
    text = _texts(at)
    # heavy noise may take the image out of the model's domain: then "not applicable" replaces its answer
    answered = [c.answered for r in _results(at) for c in r.classifications]
    assert (
        answered[0]
        and len(predictions) == sum(answered)
        and text.count("Not applicable") == 2 - sum(answered)
    )
    assert predictions[0] == preds["y_pred"].iloc[0]
    assert "Grad-CAM for" in text and "Conformal set:" in text
    assert ("the model abstains" in text) or ("Confident:" in text)
    similar = [c for img in at.image for c in img.captions if " · d=" in c]
    assert len(similar) == 5 * sum(answered)  # five distinct training cases per answered upload
    classes = set(run.task.classes)
    assert all(c.split(" · ")[0] in classes for c in similar)

    # the quality verdict: the same numbers as the quality task itself, shown before any system's answer
    qrun = load_run(trained["quality"], "cpu")
    for r, data in zip(_results(at), [clean.read_bytes(), noisy], strict=True):
        gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        with torch.no_grad():  # the task's own forward on its training input, outside the app's path
            x = torch.from_numpy(qrun.task.array_input(gray))[None]
            raw = qrun.task.forward(qrun.model.eval(), {"x": x}).float()
        k = len(qrun.task.classes)
        p, ssim = torch.softmax(raw[:, :k], 1).numpy(), torch.sigmoid(raw[:, k]).numpy()
        assert r.quality.decision == decide(p, qrun.task.classes)[0]
        assert r.quality.p_corrupted == pytest.approx(1 - p[0, qrun.task.classes.index("original")], abs=1e-5)
        assert r.quality.ssim_est == pytest.approx(float(ssim[0]), abs=1e-5)
    flat = _flatten(at.main)
    first_gate = next(i for i, e in enumerate(flat) if e.type in ("alert", "warning", "success")
                      and "Quality gate" in str(getattr(e, "value", "")))  # fmt: skip
    first_answer = next(i for i, e in enumerate(flat) if e.type == "metric")
    assert first_gate < first_answer


def test_page_and_predict_uncertainty_give_one_calibration_for_one_image(trained, tmp_path) -> None:
    """Temperature, conformal set, confidence and abstention of an image on the page are the ones `sonokit
    predict --uncertainty` writes for it: both score with the UncertaintyScorer `sonokit uncertainty` fitted
    (at alpha 0.5; the page's own alpha option, 0.1, sets only the EF interval). A run without that state gets
    neither a set from the page nor a table from the CLI."""
    import pandas as pd
    from typer.testing import CliRunner

    from sonokit.app.study import Options, Selection, analyse_file, load_models
    from sonokit.cli.main import app
    from sonokit.uncertainty.scorer import UncertaintyScorer

    splits = pd.read_csv(trained["fetal"] / "splits.csv")
    # a training image: in domain, so the applicability check lets the calibration through
    image = Path(splits.loc[splits["split"] == "train", "path"].iloc[0])
    out = tmp_path / "pred.csv"
    cli = CliRunner().invoke(app, ["predict", str(trained["fetal"]), str(image), "--out", str(out),
                                   "--uncertainty", "--device", "cpu", "--quiet"])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    (row,) = pd.read_csv(out, dtype={"conformal_set": str}, keep_default_na=False).to_dict("records")

    options = Options(gradcam=False, similar=False)
    models = load_models(Selection(classifiers=(str(trained["fetal"]),)), "cpu")
    (page,) = analyse_file(image, image.name, models, options, tmp_path).classifications
    scorer = UncertaintyScorer.load(trained["fetal"])
    assert page.applicable is True and row["applicable"] in (True, "True")
    assert page.prediction == row["y_pred"]
    assert page.temperature == scorer.temperature and page.set_level == pytest.approx(0.5)
    assert "|".join(page.conformal_set) == row["conformal_set"]
    # the scorer's 50% set leaves classes out; a refit at the page's alpha (0.1) on two images held all six
    assert 0 < len(page.conformal_set) < len(page.classes)
    assert page.confidence == pytest.approx(float(row["confidence"]), abs=1e-6)
    assert str(page.abstain) == str(row["abstain"])
    assert any("the alpha option sets the EF interval only" in n for n in page.notes)

    bare = shutil.copytree(trained["fetal"], tmp_path / "bare", ignore=shutil.ignore_patterns("uncertainty"))
    cli = CliRunner().invoke(app, ["predict", str(bare), str(image), "--out", str(tmp_path / "bare.csv"),
                                   "--uncertainty", "--device", "cpu", "--quiet"])  # fmt: skip
    assert cli.exit_code != 0 and "sonokit uncertainty" in str(cli.exception or cli.output)
    models = load_models(Selection(classifiers=(str(bare),)), "cpu")
    (page,) = analyse_file(image, image.name, models, options, tmp_path).classifications
    assert page.conformal_set is None and page.abstain is None and page.temperature is None
    assert any(
        n.startswith("no conformal set or abstention: ") and "sonokit uncertainty" in n for n in page.notes
    )


def _flatten(node) -> list:
    out = []
    for child in getattr(node, "children", {}).values():
        out.append(child)
        out += _flatten(child)
    return out


def test_aortic_valve_page_shows_box_crop_and_probability(trained, monkeypatch) -> None:
    from sonokit.av.cascade import Cascade
    from sonokit.data.frames import read_gray

    frame = sorted((trained["psax_data"] / "images").glob("*.png"))[0]
    at = _upload(_app(trained, monkeypatch, av=True, opt_avthr=0.0), (frame.name, frame.read_bytes()))
    expected = Cascade(trained["avdet"], trained["avcls"], "cpu", score_threshold=0.0).run(
        [read_gray(frame)]
    )[0]
    assert expected.status == "ok"
    metrics = {m.label: m.value for m in at.get("metric")}
    assert metrics["P(calcified)"] == f"{expected.p_calcified:.2f}"
    captions = [c for img in at.image for c in img.captions]
    assert "detected valve box" in captions and "crop given to the calcification model" in captions
    (result,) = _results(at)
    x1, y1, x2, y2 = expected.window
    assert result.av.crop.shape[:2] == (y2 - y1, x2 - x1)
    assert result.av.box == pytest.approx(tuple(expected.box))


def _photo(path: Path) -> Path:
    """A natural photograph (skimage's astronaut) as a PNG: an upload no ultrasound model was trained on."""
    import cv2
    import skimage.data

    cv2.imwrite(str(path), np.ascontiguousarray(skimage.data.astronaut()[..., ::-1]))
    return path


def test_foreign_upload_gets_not_applicable_instead_of_an_answer(trained, monkeypatch, tmp_path) -> None:
    import pandas as pd

    from sonokit.app.report import predictions_table

    photo = _photo(tmp_path / "astronaut.png")
    splits = pd.read_csv(trained["fetal"] / "splits.csv")
    own = Path(splits.loc[splits["split"] == "train", "path"].iloc[0])  # an image the model was trained on
    at = _upload(
        _app(trained, monkeypatch, cls=True), ("photo.png", photo.read_bytes()), (own.name, own.read_bytes())
    )

    text = _texts(at)
    assert "Not applicable to fetal: this image does not look like its training data" in text
    assert (
        len([m for m in at.get("metric") if m.label == "Prediction"]) == 1
    )  # only the fetal image is answered
    foreign, known = (r.classifications[0] for r in _results(at))
    assert foreign.applicable is False and not foreign.similar and foreign.gradcam is None
    assert known.applicable is True and known.applicability > foreign.applicability
    # the uploaded training image is among its own similar cases, and marked as such
    assert [s.in_training_set for s in known.similar].count(True) == 1
    assert "this image, in the training set" in text
    table = predictions_table(_results(at))
    assert table["y_pred"].tolist()[0] == "not applicable" and pd.isna(table.filter(like="p_").iloc[0]).all()
    assert (
        trained["fetal"] / "applicability" / "applicability.json"
    ).is_file()  # fitted once, kept in the run


# ---------------------------------------------------------------------------------------------- bad input, privacy


def test_corrupted_uploads_show_a_message_and_the_app_keeps_working(trained, monkeypatch) -> None:
    video = sorted((trained["echo_data"] / "Videos").glob("*.avi"))[1]
    data = video.read_bytes()
    at = _upload(
        _app(trained, monkeypatch, ef=True),
        ("truncated.avi", data[: len(data) // 50]),
        ("notes.dcm", b"Patient notes, not an image\n" * 20),
        (video.name, data),
    )
    errors = [e.value for e in at.error]  # upload names are hidden by default: "study N" in upload order
    assert "study 1.avi: not a readable video (OpenCV/FFmpeg cannot open it)" in errors
    assert "study 2.dcm: not a DICOM file (no DICOM header found)" in errors
    assert len([m for m in at.get("metric") if m.label == "EF"]) == 1  # the good file is still measured
    assert not any("/tmp" in e or "upload" in e for e in errors)  # the temporary path never shows

    # the next upload works as usual
    images = sorted((trained["fetal_data"] / "Images").glob("*.png"))
    at = _upload(at, (video.name, data), ("still.png", images[0].read_bytes()))
    assert not at.error or all("Not for clinical" in e.value for e in at.error)
    assert "EF needs a cine; this image has 1 frame(s)" in _texts(at)


def test_dicom_identifiers_never_reach_the_page_or_the_downloads(
    trained, monkeypatch, ybr_dicom, tmp_path
) -> None:
    import pydicom

    from sonokit.app.report import predictions_csv, report_html
    from sonokit.app.study import Options

    ds = pydicom.dcmread(ybr_dicom)
    secrets = {"PatientName": "Doe^Janet", "PatientID": "MRN-4711-XZ", "InstitutionName": "St Elsewhere Hospital",
               "ReferringPhysicianName": "Quincy^Harold", "PatientBirthDate": "19470101"}  # fmt: skip
    for key, value in secrets.items():
        setattr(ds, key, value)
    path = tmp_path / "study.dcm"
    ds.save_as(path)
    at = _upload(_app(trained, monkeypatch, ef=True), ("study.dcm", path.read_bytes()))
    text = _texts(at)
    assert "JPEG Baseline" in text and "YBR_FULL_422" in text  # the technical header is shown ...
    (result,) = _results(at)
    page = re.sub(r"base64,[A-Za-z0-9+/=]+", "", report_html([result], Options()))  # inlined images, video
    downloads = predictions_csv([result]).decode() + page
    for value in [*secrets.values(), "Doe", "Janet", "4711", "Elsewhere", "Quincy", "1947"]:
        assert value not in text and value not in downloads  # ... identifiers never are
    assert result.preview is not None and result.masked
    assert {m.label for m in at.get("metric")} >= {"EF"}


# ---------------------------------------------------------------------------------------------- end to end


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {TIMEOUT} s")


@contextlib.contextmanager
def _served_page(runs: Path, tmp_path: Path):
    """`sonokit app --runs RUNS` on a free port, opened in headless Chromium: yields (driver, wait)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    assert Path(driver_path).is_file(), (
        "install Debian's chromium and chromium-driver (apt-get install -y ...)"
    )
    port = _free_port()
    env = {**os.environ, "SONOKIT_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "sonokit", "app", "--runs", str(runs), "--port", str(port), "--device", "cpu"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    driver = None
    try:
        deadline = time.monotonic() + TIMEOUT
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", deadline)
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                     f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000"):  # fmt: skip
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        driver.set_page_load_timeout(TIMEOUT)
        driver.get(f"http://127.0.0.1:{port}/")
        yield driver, WebDriverWait(driver, max(1.0, deadline - time.monotonic() + 60))
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()


def test_server_in_headless_chromium_shows_the_ef(trained, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    from sonokit.echo.predict import load_echo_models, predict_study

    video = sorted((trained["echo_data"] / "Videos").glob("*.avi"))[2]
    expected = predict_study(video, load_echo_models([trained["ef"]], "cpu"))["ef"]
    with _served_page(trained["ef"], tmp_path) as (driver, wait):
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type=file]"))
        upload.send_keys(str(video))
        metric = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '[data-testid="stMetricValue"]'))
        page = driver.find_element(By.TAG_NAME, "body").text
        assert metric.text == f"{expected:.1f} %", page[:2000]
        assert re.search(r"Not for clinical use", page)
        assert video.name in page


def test_server_in_headless_chromium_says_not_applicable_for_a_photograph(trained, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    photo = _photo(tmp_path / "astronaut.png")
    with _served_page(trained["fetal"], tmp_path) as (driver, wait):
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type=file]"))
        upload.send_keys(str(photo))
        alert = wait.until(
            lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, '[data-testid="stAlert"]')
                            if "Not applicable" in e.text), None)
        )  # fmt: skip
        assert "Not applicable to fetal: this image does not look like its training data" in alert.text
        page = driver.find_element(By.TAG_NAME, "body").text
        assert "Prediction" not in page, page[:2000]  # no answer shown for the foreign upload


def test_clip_sampling_option_changes_only_a_copy_of_the_ef_model(trained) -> None:
    from sonokit.app.echo import with_clip
    from sonokit.echo.predict import load_echo_models, predict_study

    (model,) = load_echo_models([trained["ef"]], "cpu")
    assert with_clip(model, 16, 4) is model  # the model's own sampling: nothing to change
    short = with_clip(model, 8, 2)
    assert (short.run.task.opts.frames, short.run.task.opts.period) == (8, 2)
    assert (model.run.task.opts.frames, model.run.task.opts.period) == (
        16,
        4,
    )  # the cached model is untouched
    video = sorted((trained["echo_data"] / "Videos").glob("*.avi"))[0]
    own, other = predict_study(video, [model]), predict_study(video, [short])
    assert other["ef_video_clips"] > own["ef_video_clips"]  # 8 x 2 frames fit more clips than 16 x 4
