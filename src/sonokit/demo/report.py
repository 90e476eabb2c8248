"""The demo's one report: a section per system with its metrics (95% CIs), plots, examples and commands.

Written twice from the same sections: report.html (self-contained, PNGs inlined) and report.md (PNGs linked), so
the page can be mailed alone and the Markdown read in a repository.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from sonokit.utils import atomic_write_text

DISCLAIMER = (
    "Research software, not for clinical use. Every number here was measured on simulated data made by this run "
    "(or on the real HC18 subset where stated): simulated data checks the pipeline, it is not evidence of clinical "
    "performance."
)

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
.warn{background:#fff3cd;border:1px solid #e0c36c;padding:.6em 1em;border-radius:4px;font-weight:600}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:1em} figure{margin:0} figcaption{font-size:.8em;color:#555}
img{max-width:420px;border:1px solid #eee} pre{background:#f6f8fa;padding:.6em;overflow-x:auto}
.err{color:#a00}
"""


@dataclass
class Metric:
    name: str
    value: float | str | None
    ci95: list[float] | None = None
    note: str = ""


@dataclass
class Section:
    """What one system contributes to the report."""

    key: str
    title: str
    summary: str = ""
    metrics: list[Metric] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    examples: list[Path] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def add_metric(self, metrics: dict, key: str, label: str | None = None, note: str = "") -> None:
        """Copy one metric (and its CI when present) from a metrics JSON dict; a missing key is skipped."""
        if key in metrics and metrics[key] is not None:
            self.metrics.append(Metric(label or key, metrics[key], metrics.get(f"{key}_ci95"), note))


def _fmt(value: float | str | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _ci(ci: list[float] | None) -> str:
    if not ci or len(ci) != 2 or any(v is None for v in ci):
        return ""
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _img_html(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = html.escape(path.stem.replace("_", " "))
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'
    )


def render_html(sections: list[Section], title: str, header: list[tuple[str, str]]) -> str:
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="warn">{html.escape(DISCLAIMER)}</p>', "<table>"]
    parts += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in header]
    parts.append("</table>")
    for s in sections:
        parts.append(f'<h2 id="{html.escape(s.key)}">{html.escape(s.title)}</h2>')
        if s.error:
            parts.append(f'<p class="err">This system failed: {html.escape(s.error)}</p>')
        if s.summary:
            parts.append(f"<p>{html.escape(s.summary)}</p>")
        if s.metrics:
            rows = "".join(
                f"<tr><td>{html.escape(m.name)}</td><td>{_fmt(m.value)}</td><td>{_ci(m.ci95)}</td>"
                f"<td>{html.escape(m.note)}</td></tr>"
                for m in s.metrics
            )
            parts.append(
                f"<table><tr><th>metric</th><th>value</th><th>95% CI</th><th></th></tr>{rows}</table>"
            )
        images = [p for p in s.plots + s.examples if p.is_file()]
        if images:
            parts += ['<div class="plots">', *(_img_html(p) for p in images), "</div>"]
        if s.commands:
            cmds = html.escape("\n".join(s.commands))
            parts.append(f"<p>Redo this on your own data:</p><pre>{cmds}</pre>")
        parts.append(f"<p><small>{s.seconds:.0f} s</small></p>")
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


def render_markdown(sections: list[Section], title: str, header: list[tuple[str, str]], root: Path) -> str:
    lines = [f"# {title}", "", f"> {DISCLAIMER}", ""]
    lines += [f"- {k}: {v}" for k, v in header]
    for s in sections:
        lines += ["", f"## {s.title}", ""]
        if s.error:
            lines += [f"**This system failed:** {s.error}", ""]
        if s.summary:
            lines += [s.summary, ""]
        if s.metrics:
            lines += ["| metric | value | 95% CI | |", "|---|---|---|---|"]
            lines += [f"| {m.name} | {_fmt(m.value)} | {_ci(m.ci95)} | {m.note} |" for m in s.metrics]
            lines.append("")
        for p in s.plots + s.examples:
            if p.is_file():
                lines.append(f"![{p.stem}]({os.path.relpath(p, root)})")
        if s.commands:
            lines += ["", "```bash", *s.commands, "```"]
    return "\n".join(lines) + "\n"


def write_reports(
    out: Path, sections: list[Section], title: str, header: list[tuple[str, str]]
) -> tuple[Path, Path]:
    html_path = atomic_write_text(out / "report.html", render_html(sections, title, header))
    md_path = atomic_write_text(out / "report.md", render_markdown(sections, title, header, out))
    return html_path, md_path
