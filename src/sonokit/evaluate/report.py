"""report.html: one self-contained page per run (inline PNGs, metrics with CIs, model card, disclaimer).

Self-contained so it can be mailed or archived alone; everything is escaped, nothing is fetched from the network.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from sonokit.utils import atomic_write_text

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.warn{background:#fff3cd;border:1px solid #e0c36c;padding:.6em 1em;border-radius:4px;font-weight:600}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:1em} figure{margin:0} figcaption{font-size:.8em;color:#555}
img{max-width:520px;border:1px solid #eee} .small img{max-width:260px}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _ci(ci: Any) -> str:
    return (
        f"[{ci[0]:.4f}, {ci[1]:.4f}]" if isinstance(ci, list) and len(ci) == 2 and None not in ci else "n/a"
    )


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = [
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td><td>{_ci(metrics.get(f'{k}_ci95'))}</td></tr>"
        for k, v in metrics.items()
        if f"{k}_ci95" in metrics
    ]
    head = "<tr><th>metric</th><th>value</th><th>95% CI</th></tr>"
    extra = []
    for key in (
        "n",
        "n_groups",
        "n_videos",
        "video_rule",
        "n_patients",
        "patient_level",
        "loss",
        "ci_method",
        "resampled",
        "near_duplicates_in_train",
    ):
        if key in metrics:
            extra.append((key, metrics[key]))
    return f"<table>{head}{''.join(rows)}</table>" + _kv_table(extra)


def _groups_label(unit: str | None) -> str:
    return f"groups per split ({unit})" if unit else "groups per split"


def _leakage_text(leak: dict[str, Any] | None) -> str:
    """One line: what the group unit was, how many mask-like inputs were kept, near-duplicates per split."""
    if not leak:
        return "n/a"
    parts = [f"groups are {leak.get('group_unit')}"]
    if leak.get("per_file_groups"):
        parts[0] += " (no patient column: splits and CIs are per file)"
    if leak.get("mask_like_inputs"):
        parts.append(f"{leak['mask_like_inputs']} mask-like inputs kept (allow_mask_like)")
    near = leak.get("near_duplicates")
    if near:
        counts = ", ".join(f"{s} {near[s]}" for s in ("val", "test") if s in near)
        parts.append(
            f"near-duplicates of train images ({near.get('hash')}, <= {near.get('max_distance')} bits): {counts}"
        )
    else:
        parts.append("near-duplicates not checked for this task")
    return "; ".join(parts)


def _per_class_table(per_class: dict[str, dict[str, Any]]) -> str:
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{_fmt(v['precision'])}</td><td>{_fmt(v['recall'])}</td>"
        f"<td>{_fmt(v['f1'])}</td><td>{v['support']}</td></tr>"
        for c, v in per_class.items()
    )
    return f"<table>{head}{rows}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(path.name)}</figcaption></figure>"
    )


def _cv_table(cv: dict[str, Any]) -> str:
    head = "<tr><th>metric</th><th>mean</th><th>std</th><th>per fold</th></tr>"
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(v.get('mean'))}</td><td>{_fmt(v.get('std'))}</td>"
        f"<td>{', '.join(_fmt(x) for x in v.get('values', []))}</td></tr>"
        for k, v in cv.get("metrics", {}).items()
    )
    return f"<table>{head}{rows}</table>"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _uncertainty_section(u: dict[str, Any]) -> list[str]:
    """uncertainty.json as tables: calibration, conformal coverage, selective risk, error detection, and the
    combined predictor (classifier, or the neighbours' vote where flagged) against the classifier alone."""
    if "calibration" not in u:  # regression: conformal intervals only
        a = u.get("absolute", {})
        return [
            "<h2>Uncertainty (conformal intervals, fitted on val)</h2>",
            _kv_table(
                [
                    ("target coverage", _pct(1 - u["alpha"])),
                    ("interval", f"+- {a.get('qhat', float('nan')):.2f}"),
                    ("test coverage", _pct(a.get("coverage"))),
                ]
            ),
        ]
    c, sel = u["calibration"], u["selective"]
    rows: list[tuple[str, Any]] = [
        (f"test {u.get('level', 'items')}", u["n_test"]),
        ("ECE before -> after temperature scaling", f"{c['ece_before']:.4f} -> {c['ece_after']:.4f}"),
        ("NLL before -> after", f"{c['nll_before']:.4f} -> {c['nll_after']:.4f} (T={c['temperature']:.3f})"),
    ]
    if "used" in c:  # uncertainty.json written before the ECE check has no such keys
        rows.append(("temperature scaling (checked on val)", c["note"]))
    if c.get("test_ece_worse"):
        rows.append(("note", "test ECE is worse after temperature scaling than before"))
    for method, r in u["conformal"].items():
        rows.append(
            (
                f"conformal {method.upper()} coverage (target {_pct(1 - u['alpha'])})",
                f"{_pct(r['coverage'])}, mean set size {r['mean_set_size']:.2f}",
            )
        )
    rows += [
        ("risk at 80% coverage (all items)", f"{_pct(sel['risk_at_80'])} ({_pct(sel['risk_full'])})"),
        ("AURC", sel["aurc"]),
    ]
    rows += [
        (f"error-detection AUROC, {kind}", v["auroc_test"]) for kind, v in u.get("correctness", {}).items()
    ]
    parts = ["<h2>Uncertainty (fitted on val, reported on test)</h2>", _kv_table(rows)]
    cb = u.get("combined")
    if cb:
        gain, gain_ci = cb.get("accuracy_gain"), cb.get("accuracy_gain_ci95")
        ci = f" [{100 * gain_ci[0]:+.1f}, {100 * gain_ci[1]:+.1f}]" if gain_ci else ""
        gain_text = "n/a" if gain is None else f"{100 * gain:+.1f}{ci} ({cb.get('ci_method', '')})"
        parts += [
            "<h3>Combined predictor (classifier, neighbours' vote where the correctness check flags it)</h3>",
            _kv_table(
                [
                    ("accuracy, classifier alone", _pct(cb["accuracy_plain"])),
                    (f"accuracy, kNN vote alone (k={u.get('knn_k')})", _pct(cb["accuracy_knn"])),
                    (f"accuracy, combined ({cb['selected_by_val']})", _pct(cb["accuracy_combined"])),
                    ("combined minus classifier, points (95% CI)", gain_text),
                ]
            ),
        ]
    return parts


def _external_section(metrics_files: list[Path]) -> list[str]:
    """Which run scored which data (an evaluation folder written by `sonokit evaluate --out`)."""
    for path in metrics_files:
        m = json.loads(path.read_text(encoding="utf-8"))
        if "run" in m and "data" in m:
            return [
                "<h2>External evaluation</h2>",
                _kv_table(
                    [
                        ("run", m["run"]),
                        ("data", m["data"]),
                        ("rows scored", m.get("rows")),
                        ("items (images, frames or clips)", m.get("items")),
                        ("split of the data used", m.get("data_split")),
                    ]
                ),
            ]
    return []


def _by_tables(metrics: dict[str, Any]) -> list[str]:
    """The per-level tables (`--by`) stored in a metrics json."""
    import pandas as pd

    from sonokit.evaluate.breakdown import html_table

    parts = []
    for column, entry in (metrics.get("by") or {}).items():
        bins = entry.get("bins")
        note = f" (bins {html.escape(str(bins))})" if bins else ""
        parts += [
            f"<h3>By {html.escape(column)}{note}</h3>",
            html_table(pd.DataFrame(entry["table"]), column),
        ]
    return parts


def write_report(run_dir: str | Path, card_dir: str | Path | None = None) -> Path:
    """Build run_dir/report.html from model_card.json, metrics_*.json and plots/*.png (whatever exists).

    `card_dir`: the run whose model card describes the model, when run_dir is an evaluation folder of its own.
    """
    run_dir = Path(run_dir)
    card_dir = Path(card_dir) if card_dir is not None else run_dir
    card: dict[str, Any] = {}
    if (card_dir / "model_card.json").is_file():
        card = json.loads((card_dir / "model_card.json").read_text(encoding="utf-8"))
    metrics_files = sorted(run_dir.glob("metrics_*.json"))
    external = _external_section(metrics_files) if card_dir != run_dir else []
    title = "sonokit external evaluation" if external else "sonokit run"
    parts = [
        f"<h1>{title}: {html.escape(str(card.get('name', card_dir.name)))}</h1>",
        f"<p>task <b>{html.escape(str(card.get('task', '?')))}</b></p>",
        '<p class="warn">Research software, not for clinical use. These numbers describe this data set only; '
        "they are not evidence of clinical performance.</p>",
        *external,
    ]
    if card:
        arch = card.get("architecture", {})
        data = card.get("training_data", {})
        parts += [
            "<h2>Model card</h2>",
            _kv_table(
                [
                    (
                        "architecture",
                        f"{arch.get('name')} (head {arch.get('head')}, {arch.get('params', '?')} params)",
                    ),
                    ("classes", ", ".join(card.get("classes") or []) or "n/a"),
                    ("input", json.dumps(card.get("input", {}))),
                    ("training data", data.get("path")),
                    ("items per split", json.dumps(data.get("counts", {}))),
                    (_groups_label(data.get("group_unit")), json.dumps(data.get("groups", {}))),
                    ("leakage checks", _leakage_text(data.get("leakage"))),
                    ("training", json.dumps(card.get("training", {}))),
                    ("seed", card.get("seed")),
                    ("config hash", card.get("config_hash")),
                    ("versions", ", ".join(f"{k} {v}" for k, v in card.get("versions", {}).items())),
                    ("intended use", card.get("intended_use")),
                    ("disclaimer", card.get("disclaimer")),
                ]
            ),
        ]
    if (run_dir / "metrics_cv.json").is_file():
        cv = json.loads((run_dir / "metrics_cv.json").read_text(encoding="utf-8"))
        parts += [f"<h2>Cross-validation ({cv.get('folds')} folds, held-out fold)</h2>", _cv_table(cv)]
    for path in metrics_files:
        if path.stem == "metrics_cv":
            continue
        metrics = json.loads(path.read_text(encoding="utf-8"))
        split = path.stem[len("metrics_") :]
        parts += [f"<h2>Metrics: {html.escape(split)}</h2>", _metrics_table(metrics)]
        if "per_class" in metrics:
            parts.append(_per_class_table(metrics["per_class"]))
        parts += _by_tables(metrics)
    if (run_dir / "uncertainty.json").is_file():
        parts += _uncertainty_section(json.loads((run_dir / "uncertainty.json").read_text(encoding="utf-8")))
    plots = sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").is_dir() else []
    main = [p for p in plots if not p.name.startswith("gradcam_")]
    cams = [p for p in plots if p.name.startswith("gradcam_")]
    if main:
        parts += ["<h2>Plots</h2>", '<div class="plots">', *(_img(p) for p in main), "</div>"]
    if cams:
        parts += [
            "<h2>Grad-CAM (test images)</h2>",
            '<div class="plots small">',
            *(_img(p) for p in cams),
            "</div>",
        ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>sonokit report: {html.escape(run_dir.name)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    return atomic_write_text(run_dir / "report.html", page)
