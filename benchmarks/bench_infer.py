"""Per-frame inference latency of each 2D network the tasks use: PyTorch vs onnxruntime, batch 1 and batch 32.

The question: can the image models (quality gate, plane/LUS/valve classifiers, valve detector, LV segmentation
and tracing) keep up with a live scanner on a CPU? Target: <= 33 ms per frame at batch 1 (30 frames/s).
Each task's network is built exactly as `sonokit train <task>` builds it (task defaults from sonokit/configs/<task>.yaml:
backbone, head, input size, channels), exported with `sonokit.export` (the same code as `sonokit export`,
verified against PyTorch), and both backends are timed on the same random normalised input.
Weights are untrained: latency does not depend on their values. Preprocessing (decode, letterbox) is not
included; benchmarks/bench_decode.py times that.

Reported per task and variant: median ms per frame at batch 1 (one frame per call, the live-scanner case) and at
batch 32 (ms per call / 32, the folder-of-files case), frames/s at batch 32, peak resident memory added while
timing (VmHWM after resetting it via /proc/self/clear_refs; getrusage maxrss where that is not allowed), and
the speed-up of each variant over the first one. The machine, thread counts and load average are printed with
the table: on a shared machine, read timings together with the load.

    python benchmarks/bench_infer.py                                  # every 2D task, torch vs onnx
    python benchmarks/bench_infer.py --tasks fetal-plane,quality --threads 2
    python benchmarks/bench_infer.py --compare threads                # onnxruntime and torch at 1 vs 2 threads
    python benchmarks/bench_infer.py --exporter legacy --out bench_infer.md
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

TASKS_2D = (
    "quality",
    "fetal-plane",
    "lus",
    "classify",
    "av-detect",
    "av-calcification",
    "lv-seg",
    "lv-trace",
)
DEFAULT_CLASSES = {"quality": None, "lus": ["0", "1", "2", "3"], "av-calcification": ["0", "1"]}
TARGET_MS = 33.0


@dataclass
class Variant:
    backend: str  # "torch" | "onnx"
    threads: int

    @property
    def label(self) -> str:
        return f"{self.backend} {self.threads}t"


def build_task_model(name: str) -> tuple[torch.nn.Module, tuple[int, ...], str]:
    """(eval-mode model, one sample's shape, model description) for a task with its default config."""
    import importlib

    from sonokit.core.config import resolve_config
    from sonokit.export import sample_shape
    from sonokit.tasks import get_task

    if name == "quality":
        importlib.import_module("sonokit.quality.task")  # registers itself on import
    cls = get_task(name)
    cfg = resolve_config(name, None, {}, task_defaults=cls.defaults)
    task = cls(cfg)
    if task.classes is None and name in DEFAULT_CLASSES:
        task.classes = DEFAULT_CLASSES[name] or task.classes
    if task.classes is None and cfg.options.get("classes"):
        task.classes = list(cfg.options["classes"])
    if task.classes is None and task.kind == "classification":
        task.classes = ["a", "b"]
        if name == "fetal-plane":
            from sonokit.data.fetal_planes import FETAL_PLANES

            task.classes = list(FETAL_PLANES)
    torch.manual_seed(0)
    model = task.build_model(load_init_weights=False).eval()
    shape = sample_shape(task.input_spec())
    head = f"/{cfg.head}" if cfg.head and cfg.head != "linear" else ""
    return model, shape, f"{cfg.model}{head}"


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return (
        _rss_mb("VmHWM")
        if Path("/proc/self/status").exists()
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    )


def time_calls(fn, x: torch.Tensor, iters: int, warmup: int, min_seconds: float) -> tuple[float, float]:
    """(median, fastest) seconds per call over at least `iters` calls and `min_seconds` of timing.

    The median is what a user gets on this machine now; the fastest call shows what it does when no other
    process competes for the cores (on a loaded machine the two differ a lot, with several threads most).
    """
    for _ in range(warmup):
        fn(x)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def bench_task(name: str, variants: list[Variant], batches: list[int], args, tmp: Path) -> list[dict]:
    from sonokit.export import OnnxModel, export_model

    model, shape, desc = build_task_model(name)
    onnx_path = tmp / f"{name}.onnx"
    if any(v.backend == "onnx" for v in variants):
        result = export_model(model, shape, onnx_path, exporter=args.exporter, tol=args.tol)
        exported = f"{result.exporter}, max diff {result.worst:.1e}"
    else:
        exported = "-"
    rows = []
    for v in variants:
        torch.set_num_threads(v.threads)
        if v.backend == "torch":

            def run(x, m=model):
                with torch.inference_mode():
                    return m(x)
        else:
            session = OnnxModel(onnx_path, threads=v.threads)
            run = session
        row = {
            "task": name,
            "model": desc,
            "input": "x".join(map(str, shape)),
            "variant": v.label,
            "export": exported,
        }
        base_rss = _rss_mb("VmRSS")
        reset = _reset_peak()
        for b in batches:
            x = torch.randn(b, *shape, generator=torch.Generator().manual_seed(b))
            iters = args.iters if b == 1 else max(3, args.iters // 8)
            sec, best = time_calls(run, x, iters, args.warmup, args.min_seconds if b == 1 else 0.0)
            row[f"b{b}"] = sec / b * 1e3
            row[f"b{b}_best"] = best / b * 1e3
        row["peak_mb"] = peak_rss_mb() - base_rss if reset else float("nan")
        rows.append(row)
    return rows


def machine_line(threads: list[int]) -> str:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}; threads {threads}; load average (1, 5, 15 min) {load}"
    )


def format_table(rows: list[dict], batches: list[int]) -> str:
    head = ["task", "model", "input", "variant"]
    head += [f"ms/frame b{b} (median / best)" for b in batches]
    head += [f"frames/s b{batches[-1]}", "peak RSS MB", f"b1 <= {TARGET_MS:.0f} ms", "speed-up b1", "export"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    first: dict[str, float] = {}
    for r in rows:
        first.setdefault(r["task"], r[f"b{batches[0]}"])
        cells = [r["task"], r["model"], r["input"], r["variant"]]
        cells += [f"{r[f'b{b}']:.2f} / {r[f'b{b}_best']:.2f}" for b in batches]
        cells += [
            f"{1e3 / r[f'b{batches[-1]}']:.0f}",
            f"{r['peak_mb']:.0f}",
            "yes" if r.get("b1", float("inf")) <= TARGET_MS else "no",
            f"{first[r['task']] / r[f'b{batches[0]}']:.2f}x",
            r["export"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS_2D))
    p.add_argument(
        "--compare",
        choices=["backend", "threads"],
        default="backend",
        help="backend: torch vs onnx at --threads; threads: both backends at 1 and 2 threads",
    )
    p.add_argument("--threads", type=int, default=1, help="threads for both backends (default 1)")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--iters", type=int, default=40, help="timed calls at batch 1 (batch 32: iters / 8)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=1.0, help="time batch 1 for at least this long")
    p.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "legacy"])
    p.add_argument(
        "--tol", type=float, default=1e-3, help="export verification tolerance (untrained weights)"
    )
    p.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = p.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    batches = [int(b) for b in args.batches.split(",")]
    if args.compare == "threads":
        variants = [Variant(b, t) for b in ("torch", "onnx") for t in (1, 2)]
    else:
        variants = [Variant("torch", args.threads), Variant("onnx", args.threads)]
    rows: list[dict] = []
    before = machine_line(sorted({v.threads for v in variants}))
    with tempfile.TemporaryDirectory() as tmp:
        for name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
            rows += bench_task(name, variants, batches, args, Path(tmp))
            for line in format_table(rows[-len(variants) :], batches).splitlines()[2:]:
                print(line, flush=True)
    after = f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    text = f"{before}\n{after}\n\n{format_table(rows, batches)}\n"
    print("\n" + text)
    if args.out:
        from sonokit.utils import atomic_write_text

        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
