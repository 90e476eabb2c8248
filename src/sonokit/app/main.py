"""The sonokit web app (Streamlit script): upload a study, see every system's answer with its evidence.

Start it with `sonokit app --runs RUNS_DIR` (or `streamlit run src/sonokit/app/main.py -- --runs RUNS_DIR`).
The script only lays out the page: run discovery is sonokit.app.runs, the analysis sonokit.app.study (plain data,
tested without a browser), the downloads sonokit.app.report. Research software, not for clinical use.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from sonokit.app import runs as runs_mod
from sonokit.app.figures import badge_colour, curve_png
from sonokit.app.report import DISCLAIMER, predictions_csv, report_html
from sonokit.app.study import Options, Selection, StudyResult, analyse_upload, load_models
from sonokit.systems import ECHO, VALVE

NONE = "(none)"
MAX_CACHED = 64
UPLOAD_TYPES = None  # DICOM files often have no extension: any file is accepted and checked by its content


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sonokit app", allow_abbrev=False, add_help=False)
    parser.add_argument("--runs", default=os.environ.get("SONOKIT_RUNS", "runs"))
    parser.add_argument("--device", default=os.environ.get("SONOKIT_DEVICE", "auto"))
    return parser.parse_known_args(sys.argv[1:])[0]


@st.cache_data(ttl=30, show_spinner=False)
def _discover(root: str) -> list[runs_mod.RunInfo]:
    return runs_mod.discover_runs(root)


def _stamp(selection: Selection) -> tuple:
    """Modification times of the chosen weights and of the classifiers' `sonokit uncertainty` state: a
    retrained or newly analysed run is reloaded, not served from the cache."""
    from sonokit.uncertainty.scorer import SCORER_DIR

    dirs = [selection.ef, selection.lv, *selection.classifiers, selection.quality, selection.av_detect,
            selection.av_calcification]  # fmt: skip
    files = [Path(d) / "model.safetensors" for d in dirs if d]
    # the state's files are renamed into that folder when written: its mtime moves
    files += [Path(d) / SCORER_DIR for d in selection.classifiers]
    return tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files)


@st.cache_resource(show_spinner="Loading models ...", max_entries=4)
def _models(selection: Selection, device: str, stamp: tuple):
    return load_models(selection, device)


# ---------------------------------------------------------------------------------------------- sidebar


def _card(info: runs_mod.RunInfo) -> None:
    with st.expander(f"model card: {info.path.name}", expanded=False):
        st.markdown(f"**task** `{info.task}` · **architecture** `{info.architecture}`")
        lines = info.headline("test", n=3)
        if lines:
            st.markdown("**test metrics (95% CI)**  \n" + "  \n".join(lines))
        if info.classes:
            st.caption("classes: " + ", ".join(info.classes))
        if info.intended_use:
            st.caption("intended use: " + info.intended_use)
        st.caption(str(info.path))


def _pick(label: str, choices: list[runs_mod.RunInfo], key: str, default_first: bool = True) -> str | None:
    labels = [NONE] + [c.label for c in choices]
    index = 1 if default_first and choices else 0
    chosen = st.selectbox(label, labels, index=index, key=key)
    info = next((c for c in choices if c.label == chosen), None)
    if info is not None:
        _card(info)
    return str(info.path) if info else None


def _clip_defaults(ef_dir: str | None) -> tuple[int, int]:
    """The EF run's own clip sampling (frames per clip, period) from its model card."""
    import json

    if ef_dir:
        try:
            spec = json.loads((Path(ef_dir) / "model_card.json").read_text(encoding="utf-8")).get("input", {})
            return int(spec.get("frames") or 16), int(spec.get("period") or 4)
        except (OSError, ValueError):
            pass
    return 16, 4


def _detector_threshold(det_dir: str | None) -> float:
    """The av-detect run's own score threshold (its config.yaml options), so the slider starts where it was tuned."""
    import yaml

    if det_dir:
        try:
            cfg = yaml.safe_load((Path(det_dir) / "config.yaml").read_text(encoding="utf-8")) or {}
            return float((cfg.get("options") or {}).get("score_threshold", 0.5))
        except (OSError, ValueError, yaml.YAMLError):
            pass
    return 0.5


def sidebar(args: argparse.Namespace) -> tuple[Selection, Options, bool]:
    with st.sidebar:
        st.title("sonokit")
        st.warning("**Not for clinical use.** Research software; not a medical device.", icon="⚠️")
        asked = st.text_input(
            "Runs folder",
            value=args.runs,
            help="Searched for run folders with a model_card.json; only inside the folder the app was started "
            "with (`sonokit app --runs`)",
        )
        root, allowed = runs_mod.confine(asked, args.runs)
        if not allowed:
            st.error("Only folders inside the app's runs folder can be searched; using it instead.")
        found = _discover(root)
        groups = runs_mod.by_system(found)
        st.caption(f"{len(found)} trained model(s) found under `{root}`")

        st.subheader("Models")
        echo = groups.get("echo", [])
        video = ECHO.role("video").tasks
        ef = _pick("Echo: EF model (video)", [r for r in echo if r.task in video], "pick_ef")
        lv = _pick(
            "Echo: LV model (contour, volumes, beats)", [r for r in echo if r.task not in video], "pick_lv"
        )
        cls_runs = groups.get("classification", [])
        labels = st.multiselect(
            "Image classifiers",
            [c.label for c in cls_runs],
            default=[c.label for c in cls_runs],
            key="pick_cls",
        )
        chosen_cls = [c for c in cls_runs if c.label in labels]
        for c in chosen_cls:
            _card(c)
        quality = _pick("Quality gate", groups.get("quality", []), "pick_quality")
        av = groups.get("av", [])
        detectors, classifiers = VALVE.role("detector").tasks, VALVE.role("classifier").tasks
        av_det = _pick("Aortic valve: detector", [r for r in av if r.task in detectors], "pick_avdet")
        av_cls = _pick("Aortic valve: calcification", [r for r in av if r.task in classifiers], "pick_avcls")

        st.subheader("Options")
        thresholds = st.selectbox(
            "EF thresholds",
            ["default", "aha2022", "bse"],
            help="default: normal >50, mildly reduced 40-50, reduced <40; aha2022: 2022 AHA/ACC/HFSA; "
            "bse: British Society of Echocardiography",
            key="opt_thresholds",
        )
        headline = st.selectbox(
            "Headline EF from",
            ["video model", "LV model (Simpson's, mean of beats)"],
            help="Used when both an EF and an LV model are chosen; both values are always shown",
            key="opt_headline",
        )
        f0, p0 = _clip_defaults(ef)
        c1, c2 = st.columns(2)
        frames = c1.number_input("frames / clip", 2, 128, f0, key="opt_frames")
        period = c2.number_input("period", 1, 16, p0, key="opt_period")
        alpha = st.slider("Conformal alpha (EF interval)", 0.01, 0.5, 0.1, 0.01, key="opt_alpha",
                          help="The EF interval covers the truth with probability 1 - alpha; classifier sets "
                               "keep the level `sonokit uncertainty` fitted, as `sonokit predict --uncertainty` "
                               "does")  # fmt: skip
        top_k = st.number_input("top-k classes", 1, 10, 3, key="opt_topk")
        n_similar = st.number_input("similar cases", 0, 10, 5, key="opt_similar")
        quality_threshold = st.slider(
            "Quality: reject when P(corrupted) ≥", 0.05, 1.0, 0.5, 0.05, key="opt_qthr"
        )
        av_threshold = st.slider(
            "Aortic valve: detection score ≥", 0.0, 1.0, _detector_threshold(av_det), 0.05, key="opt_avthr",
            help="Below it a frame gets 'no valve found' (default: the detector run's own threshold)",
        )  # fmt: skip
        hide_names = st.toggle("Hide file names", value=True, key="opt_hide",
                               help="Show 'study 1, 2, ...' instead of the uploaded file names (names often "
                                    "hold patient names or IDs)")  # fmt: skip
        st.caption(DISCLAIMER)
    selection = Selection(
        ef=ef, lv=lv, classifiers=tuple(str(c.path) for c in chosen_cls), quality=quality,
        av_detect=av_det, av_calcification=av_cls,
    )  # fmt: skip
    options = Options(
        thresholds=thresholds,
        ef_headline="video" if headline == "video model" else "lv",
        frames=int(frames),
        period=int(period),
        alpha=float(alpha),
        top_k=int(top_k),
        n_similar=int(n_similar),
        quality_threshold=float(quality_threshold),
        av_threshold=float(av_threshold),
    )
    return selection, options, hide_names


# ---------------------------------------------------------------------------------------------- results


def _round(v, digits: int = 1):
    return round(v, digits) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _fmt(v, digits: int = 1, unit: str = "") -> str:
    return f"{v:.{digits}f}{unit}" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def show_echo(r: StudyResult) -> None:
    e = r.echo
    if e is None:
        return
    c1, c2, c3, c4 = st.columns(4)
    interval = (
        f"{e.interval_level:.0%} interval: {e.interval[0]:.1f} to {e.interval[1]:.1f} %"
        if e.interval
        else "no conformal interval"
    )
    c1.metric("EF", _fmt(e.ef, 1, " %"), help=f"EF from the {e.ef_source} model. {e.interval_note}")
    c1.caption(interval)
    if e.not_applicable:
        st.error(
            f"Not applicable to {', '.join(e.not_applicable)}: this cine does not look like "
            f"{'its' if len(e.not_applicable) == 1 else 'their'} training data"
            + ("; no EF is given." if not e.ef_source else f"; the EF shown is from {e.ef_source}.")
        )
    if e.flags:
        st.warning(f"Check this answer: {e.flags}")
    if e.curve is not None:
        c2.metric(f"EDV ({e.volume_unit})", _fmt(e.edv))
        c3.metric(f"ESV ({e.volume_unit})", _fmt(e.esv))
    elif not e.flags:
        c2.caption(
            "EDV, ESV, contour and beats need an LV model (lv-seg or lv-trace): pick one in the sidebar."
        )
    with c4:
        st.markdown("**Heart function**")
        st.badge(e.heart_class or "n/a", color=badge_colour(e.heart_class, e.thresholds))
        st.caption(f"{e.thresholds} thresholds")
    st.caption(
        f"{e.interval_note}. Video model EF {_fmt(e.ef_video, 1, ' %')} (sd over clips {_fmt(e.ef_video_sd, 2)}, "
        f"clips at each ED {_fmt(e.ef_video_beats, 1, ' %')}); LV model EF {_fmt(e.ef_lv, 1, ' %')} "
        f"(mean over beats). {e.n_frames} frames at {_fmt(e.fps or math.nan, 1)} fps."
    )
    left, right = st.columns([1, 1.4])
    with left:
        if e.overlay_webm:
            st.video(e.overlay_webm, format="video/webm", loop=True)
            st.caption("Review video: LV contour on the cine (masked outside the sector), area curve below")
    with right:
        png = curve_png(e)
        if png:
            st.image(png, caption="LV area over time with end-diastole (red) and end-systole (blue)")
        if e.beats:
            unit = e.volume_unit
            st.dataframe(
                [
                    {"beat": b["beat"], "ED frame": b["ed"], "ES frame": b["es"], "EF %": _round(b.get("ef")),
                     f"EDV ({unit})": _round(b.get("edv")), f"ESV ({unit})": _round(b.get("esv"))}
                    for b in e.beats
                ],
                hide_index=True,
            )  # fmt: skip
        elif e.curve is not None:
            st.caption("No complete beat found: ED/ES are the largest and the smallest LV of the cine.")


def show_classification(r: StudyResult) -> None:
    for c in r.classifications:
        st.markdown(f"#### {c.task} · `{c.model}`")
        if not c.answered:
            st.warning(
                f"Not applicable to {c.model}: this image does not look like its training data "
                f"(applicability {c.applicability:.3f}; applicable when {c.applicability_rule}).",
                icon="🚫",
            )
            continue
        left, mid, right = st.columns([1.2, 1.4, 1])
        with left:
            st.metric("Prediction", c.prediction, help=f"answer for the {c.unit}")
            st.caption(f"{c.unit}; top-{len(c.top_k)}: " + ", ".join(f"{k} {p:.2f}" for k, p in c.top_k))
            if c.abstain:
                st.warning(f"Uncertain: the model abstains ({c.abstain_reason}).", icon="⚠️")
            elif c.abstain is False:
                st.success(
                    "Confident: one class in the conformal set, confidence above the abstention threshold."
                )
            if c.conformal_set is not None:
                fitted = (f" ({c.set_level:.0%} level, T = {c.temperature:.2f}, as `sonokit uncertainty` fitted)"
                          if c.set_level is not None and c.temperature is not None else "")  # fmt: skip
                st.caption(f"Conformal set: {', '.join(c.conformal_set) or '(empty)'}{fitted}")
            if c.applicable:
                st.caption(f"Applicable: looks like the training data (applicability {c.applicability:.3f})")
            for n in c.notes:
                st.caption(n)
        with mid:
            st.dataframe(
                {"class": c.classes, "p": [float(p) for p in c.probs]},
                column_config={
                    "class": st.column_config.TextColumn("class"),
                    "p": st.column_config.ProgressColumn(
                        "probability", min_value=0.0, max_value=1.0, format="%.2f"
                    ),
                },
                hide_index=True,
                width="stretch",
            )
        with right:
            if c.gradcam is not None:
                frame = f" (frame {c.frame})" if c.frame is not None else ""
                st.image(c.gradcam, caption=f"Grad-CAM for '{c.prediction}'{frame}", width="stretch")
        if c.similar:
            st.markdown(f"Most similar training cases (kNN vote: **{c.knn_vote}**)")
            cols = st.columns(len(c.similar))
            for col, s in zip(cols, c.similar, strict=True):
                text = f"{s.label} · d={s.distance:.3f}" + (
                    " · this image, in the training set" if s.in_training_set else ""
                )
                if s.image is not None:
                    col.image(s.image, caption=text, width="stretch")
                else:
                    col.caption(f"{text} (not shown)")


def show_av(r: StudyResult) -> None:
    a = r.av
    if a is None:
        return
    c1, c2, c3 = st.columns([1.4, 0.8, 1])
    if a.status == "ok":
        c3.metric("P(calcified)", f"{a.p_calcified:.2f}")
        c3.badge(f"calcified: {a.calcified}", color="red" if a.calcified == "yes" else "green")
        c3.caption(f"box score {a.score:.2f} (best of {a.frames_checked} frame(s)); frame {a.frame}")
    elif a.status == "not applicable":
        c3.error(
            f"Not applicable to {a.model}: no frame looks like the detector's training data "
            f"({a.frames_checked} frame(s) checked)."
        )
    else:
        c3.info(f"No valve found (best score {a.score:.2f} in {a.frames_checked} frame(s)).")
    if a.boxed is not None:
        c1.image(a.boxed, caption="detected valve box", width="stretch")
    if a.crop is not None:
        c2.image(a.crop, caption="crop given to the calcification model", width="stretch")


def show_result(r: StudyResult, i: int) -> None:
    st.subheader(r.name)
    if r.error:
        st.error(r.error)
        return
    q = r.quality
    if q is not None:
        text = (f"{q.label} p={q.probability:.2f}; P(corrupted) {q.p_corrupted:.2f}; "
                f"estimated SSIM {q.ssim_est:.2f} [{q.model}]")  # fmt: skip
        if q.looks_corrupted:
            st.warning(
                f"Quality gate: this image looks corrupted ({text}). Results below may be unreliable.",
                icon="⚠️",
            )
        else:
            st.success(f"Quality gate: looks clean ({text}).")
    side, body = st.columns([1, 3], gap="medium")
    with side:
        if r.preview is not None:
            st.image(r.preview, caption="middle frame, masked outside the ultrasound region", width="stretch")
        elif r.mask_note:
            st.info(r.mask_note)
        with st.expander("File details (de-identified header)", expanded=False):
            st.dataframe(
                {"field": list(r.header), "value": [str(v) for v in r.header.values()]}, hide_index=True
            )
        st.caption(f"analysed in {r.seconds:.1f} s")
    with body:
        for system, message in r.errors.items():
            st.error(f"{system}: {message}")
        for system, message in r.notes.items():
            st.info(f"{system}: {message}")
        tabs = []
        if r.echo is not None:
            tabs.append(("Echo LVEF", show_echo))
        if r.classifications:
            tabs.append(("Classification", show_classification))
        if r.av is not None:
            tabs.append(("Aortic valve", show_av))
        if tabs:
            for tab, (_, fn) in zip(st.tabs([t[0] for t in tabs]), tabs, strict=True):
                with tab:
                    fn(r)
        if r.echo is not None and r.echo.overlay_webm:
            st.download_button(
                "Download overlay video (WebM)", r.echo.overlay_webm,
                file_name=f"{Path(r.name).stem}_overlay.webm", mime="video/webm", key=f"dl_overlay_{i}",
            )  # fmt: skip


def _cached_result(
    key: tuple, name: str, data: bytes, models, options: Options, checkpoint: Callable[[str], None]
) -> StudyResult:
    cache: dict = st.session_state.setdefault("results", {})
    if key not in cache:
        cache[key] = analyse_upload(name, data, models, options, checkpoint)
        while len(cache) > MAX_CACHED:
            cache.pop(next(iter(cache)))
    return cache[key]


def main() -> None:
    st.set_page_config(page_title="sonokit", page_icon="🫀", layout="wide")
    args = _args()
    selection, options, hide_names = sidebar(args)
    st.title("Ultrasound study review")
    st.caption("Upload DICOM, AVI, MP4, PNG or JPG files: every chosen model answers, with its evidence. "
               "Files are analysed in a private temporary folder and deleted straight after.")  # fmt: skip
    uploads = st.file_uploader("Study files", accept_multiple_files=True, type=UPLOAD_TYPES, key="uploads")
    if selection.is_empty():
        st.info(
            "No model chosen: pick trained runs in the sidebar (or start with `sonokit app --runs RUNS_DIR`)."
        )
        return
    models = _models(selection, args.device, _stamp(selection))
    for run_dir, message in models.errors.items():
        st.error(f"{Path(run_dir).name}: {message}")
    if not uploads:
        return
    results: list[StudyResult] = []
    progress = st.progress(0.0, text="analysing ...")
    for i, up in enumerate(uploads):
        data = up.getvalue()
        name = f"study {i + 1}{Path(up.name).suffix.lower()}" if hide_names else up.name
        key = (hashlib.sha256(data).hexdigest(), name, selection, options)

        def step(stage: str, i: int = i, name: str = name) -> None:
            # A Streamlit call: where Streamlit stops this script once the browser session has ended.
            progress.progress(
                i / len(uploads), text=f"analysing {name} ({i + 1} of {len(uploads)}): {stage} ..."
            )

        step("reading")
        results.append(_cached_result(key, name, data, models, options, step))
    progress.empty()
    c1, c2, _ = st.columns([1, 1, 3])
    c1.download_button("Download predictions (CSV)", predictions_csv(results), file_name="sonokit_predictions.csv",
                       mime="text/csv", key="dl_csv")  # fmt: skip
    c2.download_button("Download report (HTML)", report_html(results, options), file_name="sonokit_report.html",
                       mime="text/html", key="dl_html")  # fmt: skip
    for i, r in enumerate(results):
        st.divider()
        show_result(r, i)


main()
