"""The app's downloads: a predictions table (one row per file and system) and a one-page, self-contained HTML
report of the study (images and the review video inlined), built from StudyResults only, so neither can hold
anything the page did not show: no header identifiers, no pixels outside the ultrasound region."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sonokit.app.figures import curve_png, png_bytes
from sonokit.app.study import Options, StudyResult

DISCLAIMER = (
    "Research software, not for clinical use. Not a medical device: these outputs must not guide diagnosis or "
    "treatment. Models trained on small or simulated data can be confidently wrong."
)
MAX_INLINE_VIDEO = 25 * 2**20


def _num(v: Any, digits: int = 4) -> Any:
    if isinstance(v, (float, np.floating)):
        return round(float(v), digits) if math.isfinite(v) else None
    return v


def predictions_table(results: Sequence[StudyResult]) -> pd.DataFrame:
    """One row per (file, system): the answer, its probabilities/interval and flags; error rows included."""
    rows: list[dict[str, Any]] = []
    for r in results:
        if r.error:
            rows.append({"file": r.name, "system": "", "error": r.error})
            continue
        for system, message in r.errors.items():
            rows.append({"file": r.name, "system": system, "error": message})
        if r.quality is not None:
            q = r.quality
            rows.append({
                "file": r.name, "system": "quality", "model": q.model, "y_pred": q.label, "frame": q.frame,
                "p_corrupted": _num(q.p_corrupted), "ssim_est": _num(q.ssim_est), "decision": q.decision,
                **{f"p_{k}": _num(v) for k, v in q.probs.items()},
            })  # fmt: skip
        if r.echo is not None:
            e = r.echo
            row = {k: _num(v) for k, v in e.row.items() if k not in ("path", "overlay")}
            rows.append({
                "file": r.name, "system": "echo", "model": " + ".join(e.models),
                "ef_low": _num(e.interval[0]) if e.interval else None,
                "ef_high": _num(e.interval[1]) if e.interval else None,
                "thresholds": e.thresholds, **row,
            })  # fmt: skip
        for c in r.classifications:
            answer = (
                {"y_pred": c.prediction, **{f"p_{k}": _num(float(p)) for k, p in zip(c.classes, c.probs, strict=True)}}
                if c.answered else {"y_pred": "not applicable"}
            )  # fmt: skip
            rows.append({
                "file": r.name, "system": "classification", "model": c.model, "task": c.task, "unit": c.unit,
                **answer, "conformal_set": "|".join(c.conformal_set) if c.conformal_set is not None else None,
                "confidence": _num(c.confidence), "abstain": c.abstain, "knn_vote": c.knn_vote or None,
                "applicable": c.applicable, "applicability": _num(c.applicability),
            })  # fmt: skip
        if r.av is not None:
            a = r.av
            box = (
                dict(zip(("x1", "y1", "x2", "y2"), (_num(v, 1) for v in a.box), strict=True)) if a.box else {}
            )
            rows.append({
                "file": r.name, "system": "aortic valve", "model": a.model, "status": a.status, "frame": a.frame,
                "score": _num(a.score), **box, "p_calcified": _num(a.p_calcified), "calcified": a.calcified or None,
            })  # fmt: skip
    table = pd.DataFrame(rows)
    for col in table.columns:  # counts and frame numbers stay integers despite the empty cells of other rows
        values = table[col]
        if values.dtype == float and values.notna().any() and (values.dropna() % 1 == 0).all():
            table[col] = values.astype("Int64")
    if "error" in table.columns:
        table = table[[c for c in table.columns if c != "error"] + ["error"]]
    return table


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (`=HYPERLINK(...)` as an upload name) gets a leading `'`
    (the OWASP CSV-injection rule); numbers are left alone."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def predictions_csv(results: Sequence[StudyResult]) -> bytes:
    table = predictions_table(results)
    for col in table.columns:
        if not pd.api.types.is_numeric_dtype(table[col]):
            table[col] = table[col].map(csv_safe)
    return table.to_csv(index=False).encode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{margin:.9em 0 .3em}
.warn{background:#fff3cd;border:1px solid #e0c36c;padding:.5em 1em;border-radius:4px;font-weight:600}
.err{background:#fde2e2;border:1px solid #e99;padding:.5em 1em;border-radius:4px}
.ok{background:#e6f4ea;border:1px solid #9c9;padding:.5em 1em;border-radius:4px}
.big{font-size:2em;font-weight:700} .muted{color:#666;font-size:.85em}
table{border-collapse:collapse;margin:.4em 0} td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left;font-size:.9em}
th{background:#f4f4f4} .row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:0} figcaption{font-size:.8em;color:#555;max-width:220px} img{border:1px solid #eee}
.bar{background:#4c78a8;height:.8em;display:inline-block}
"""


def _img(image: np.ndarray | bytes | None, caption: str = "", width: int | None = None) -> str:
    if image is None:
        return ""
    data = image if isinstance(image, bytes) else png_bytes(image)
    w = f' width="{width}"' if width else ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{base64.b64encode(data).decode()}"{w} alt="">{cap}</figure>'
    )


def _kv(items: dict[str, Any]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items.items()
    )
    return f"<table>{cells}</table>"


def _fmt(v: float, unit: str = "", digits: int = 1) -> str:
    return f"{v:.{digits}f}{unit}" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def _echo_html(r: StudyResult) -> str:
    e = r.echo
    if e is None:
        return ""
    interval = f" [{e.interval[0]:.1f}, {e.interval[1]:.1f}]" if e.interval else ""
    parts = [
        "<h3>Echo: left-ventricular function</h3>",
        f'<p><span class="big">EF {_fmt(e.ef, " %")}</span>{html.escape(interval)} &nbsp; '
        f"<b>{html.escape(e.heart_class)}</b> ({html.escape(e.thresholds)} thresholds)</p>",
        f'<p class="muted">{html.escape(e.interval_note)}; EF from {html.escape(e.ef_source)}; '
        f"models: {html.escape(', '.join(e.models))}</p>",
        f'<p class="warn">Not applicable to {html.escape(", ".join(e.not_applicable))}: this cine does not look '
        f"like the training data</p>"
        if e.not_applicable
        else "",
        f"<p><b>Check this answer:</b> {html.escape(e.flags)}</p>" if e.flags else "",
        _kv(
            {
                "EF video model": _fmt(e.ef_video, " %"),
                "EF LV model (mean of beats)": _fmt(e.ef_lv, " %"),
                f"EDV ({e.volume_unit})": _fmt(e.edv),
                f"ESV ({e.volume_unit})": _fmt(e.esv),
                "frames": e.n_frames,
                "fps": _fmt(e.fps or math.nan),
            }
        ),  # fmt: skip
    ]
    png = curve_png(e)
    if png:
        parts.append(_img(png))
    if e.beats:
        head = "<tr><th>beat</th><th>ED frame</th><th>ES frame</th><th>EDV</th><th>ESV</th><th>EF %</th></tr>"
        body = "".join(
            f"<tr><td>{b['beat']}</td><td>{b['ed']}</td><td>{b['es']}</td><td>{_fmt(b.get('edv', math.nan))}</td>"
            f"<td>{_fmt(b.get('esv', math.nan))}</td><td>{_fmt(b.get('ef', math.nan))}</td></tr>"
            for b in e.beats
        )
        parts.append(f"<table>{head}{body}</table>")
    if e.overlay_webm and len(e.overlay_webm) <= MAX_INLINE_VIDEO:
        b64 = base64.b64encode(e.overlay_webm).decode()
        parts.append(f'<video controls loop width="480" src="data:video/webm;base64,{b64}"></video>')
    return "".join(parts)


def _class_html(r: StudyResult) -> str:
    out = []
    for c in r.classifications:
        if not c.answered:
            out.append(
                f"<h3>{html.escape(c.task)}: {html.escape(c.model)}</h3>"
                f'<p class="warn">Not applicable to {html.escape(c.model)}: this image does not look like its '
                f"training data (applicability {c.applicability:.3f}; applicable when "
                f"{html.escape(c.applicability_rule)})</p>"
            )
            continue
        bars = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{p:.3f}</td>"
            f'<td><span class="bar" style="width:{int(200 * p)}px"></span></td></tr>'
            for k, p in zip(c.classes, c.probs, strict=True)
        )
        flag = ""
        if c.abstain:
            flag = f'<p class="warn">Uncertain: the model abstains ({html.escape(c.abstain_reason)})</p>'
        elif c.abstain is False:
            flag = (
                '<p class="ok">Confident answer (single-class conformal set, confidence above threshold)</p>'
            )
        cset = ", ".join(c.conformal_set) if c.conformal_set is not None else "n/a"
        similar = "".join(
            _img(
                s.image,
                f"{s.label}  d={s.distance:.3f}"
                + ("  (this image, in the training set)" if s.in_training_set else ""),
            )
            for s in c.similar
        )
        out.append(
            f"<h3>{html.escape(c.task)}: {html.escape(c.model)}</h3>"
            f'<p><span class="big">{html.escape(c.prediction)}</span> &nbsp; ({html.escape(c.unit)})</p>{flag}'
            f"<p>conformal set: {html.escape(cset)}; kNN vote of similar cases: {html.escape(c.knn_vote or 'n/a')}</p>"
            f'<div class="row"><table>{bars}</table>{_img(c.gradcam, "Grad-CAM", 260)}</div>'
            + (f'<p>Most similar training cases</p><div class="row">{similar}</div>' if similar else "")
            + "".join(f'<p class="muted">{html.escape(n)}</p>' for n in c.notes)
        )
    return "".join(out)


def _av_html(r: StudyResult) -> str:
    a = r.av
    if a is None:
        return ""
    if a.status == "not applicable":
        text = (
            f'<span class="warn">Not applicable to {html.escape(a.model)}: no frame looks like the detector\'s '
            f"training data ({a.frames_checked} frame(s) checked)</span>"
        )
    elif a.status != "ok":
        text = f"no valve found (best score {a.score:.2f} in {a.frames_checked} frame(s))"
    else:
        text = f"calcified: <b>{a.calcified}</b> (p = {a.p_calcified:.2f}); box score {a.score:.2f}, frame {a.frame}"
    return (
        f"<h3>Aortic valve</h3><p>{text}</p>"
        f'<div class="row">{_img(a.boxed, "detected box", 320)}{_img(a.crop, "crop", 160)}</div>'
    )


def report_html(results: Sequence[StudyResult], options: Options, title: str = "sonokit study report") -> str:
    """The whole study on one self-contained page."""
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = [
        f"<h1>{html.escape(title)}</h1><p class='muted'>{when}; EF thresholds {html.escape(options.thresholds)}; "
        f"conformal alpha {options.alpha}</p><p class='warn'>{html.escape(DISCLAIMER)}</p>"
    ]
    for r in results:
        body.append(f"<h2>{html.escape(r.name)}</h2>")
        if r.error:
            body.append(f"<p class='err'>{html.escape(r.error)}</p>")
            continue
        if r.quality is not None:
            q = r.quality
            cls = "warn" if q.looks_corrupted else "ok"
            verdict = "looks corrupted" if q.looks_corrupted else "looks clean"
            body.append(
                f"<p class='{cls}'>Quality gate: {verdict} ({html.escape(q.label)} {q.probability:.2f}; "
                f"P(corrupted) {q.p_corrupted:.2f}; estimated SSIM {q.ssim_est:.2f})</p>"
            )
        body.append(
            f'<div class="row">{_img(r.preview, "frame (masked outside the sector)", 320)}{_kv(r.header)}</div>'
        )
        if r.mask_note:
            body.append(f"<p class='muted'>{html.escape(r.mask_note)}</p>")
        for system, message in r.errors.items():
            body.append(f"<p class='err'>{html.escape(system)}: {html.escape(message)}</p>")
        for system, message in r.notes.items():
            body.append(f"<p class='muted'>{html.escape(system)}: {html.escape(message)}</p>")
        body.append(_echo_html(r) + _class_html(r) + _av_html(r))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )
