"""`sonokit uncertainty` and `sonokit similar`: option parsing only; the work is in sonokit.uncertainty.report
and sonokit.retrieval.runs."""

from __future__ import annotations

from pathlib import Path

import typer

from sonokit.utils.logs import quiet_command


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def uncertainty_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `sonokit train`."),
    data: Path | None = typer.Option(
        None, "--data", help="Dataset (default: the one the run was trained on)."
    ),
    alpha: float = typer.Option(
        0.1, "--alpha", min=0.001, max=0.999, help="Conformal error rate (sets cover 1-alpha)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: the run folder)."),
    k: int = typer.Option(10, "--k", min=1, help="Neighbours in the kNN fallback vote."),
    tsne_max: int = typer.Option(
        500, "--tsne-max", min=0, help="Test items in the t-SNE plots (0: no t-SNE)."
    ),
    device: str = typer.Option("auto", "--device"),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Calibration, conformal sets, selective prediction, correctness check and kNN fallback: uncertainty.json."""
    from sonokit.uncertainty.report import run_uncertainty

    quiet_command(quiet)
    s = run_uncertainty(
        run, data=data, alpha=alpha, out=out, device=device, k=k, tsne_max=tsne_max, seed=seed
    )
    target = out or run
    if "calibration" in s:
        c = s["calibration"]
        typer.echo(f"test {s['level']}: n={s['n_test']}, accuracy {_pct(s['accuracy_test'])}")
        typer.echo(
            f"ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f} (T={c['temperature']:.2f}); "
            f"NLL {c['nll_before']:.3f} -> {c['nll_after']:.3f}"
        )
        if c.get("used") is False:
            typer.echo(c["note"])
        elif c.get("test_ece_worse"):
            typer.echo("note: test ECE is worse after temperature scaling than before")
        for method, r in s["conformal"].items():
            typer.echo(
                f"conformal {method.upper()}: coverage {_pct(r['coverage'])} (target {_pct(1 - alpha)}), "
                f"mean set size {r['mean_set_size']:.2f}"
            )
        sel = s["selective"]
        typer.echo(
            f"risk at 80% coverage {_pct(sel['risk_at_80'])} (all: {_pct(sel['risk_full'])}), "
            f"AURC {sel['aurc']:.3f}"
        )
        aurocs = ", ".join(
            f"{kind} {v['auroc_test']:.3f}"
            for kind, v in s["correctness"].items()
            if v["auroc_test"] is not None
        )
        typer.echo(f"error-detection AUROC: {aurocs}")
        if "combined" in s:
            cb = s["combined"]
            typer.echo(
                f"accuracy plain {_pct(cb['accuracy_plain'])}, kNN {_pct(cb['accuracy_knn'])}, "
                f"combined ({cb['selected_by_val']}) {_pct(cb['accuracy_combined'])}"
            )
        if "applicability" in s:
            ap = s["applicability"]
            typer.echo(f"applicable: {_pct(ap['applicable_rate_test'])} of test items ({ap['rule']})")
    else:
        a = s["absolute"]
        typer.echo(
            f"conformal interval +-{a['qhat']:.2f}: coverage {_pct(a['coverage'])} (target {_pct(1 - alpha)})"
        )
    typer.echo(f"wrote {Path(target) / 'uncertainty.json'}")


def similar_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `sonokit train`."),
    inputs: list[Path] = typer.Argument(..., help="Images, videos, DICOM files or folders."),
    k: int = typer.Option(5, "--k", min=1, help="Neighbours per input."),
    out: Path = typer.Option(..., "--out", help="Folder for similar.csv and the montage PNGs."),
    data: Path | None = typer.Option(None, "--data", help="Training data, when it moved since training."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild RUN/index/ even when it is up to date."),
    max_montages: int = typer.Option(50, "--max-montages", min=0),
    all_frames: bool = typer.Option(
        False, "--all-frames", help="Allow several neighbours from one training file (default: one per file)."
    ),
    device: str = typer.Option("auto", "--device"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Show the closest training images: paths and cosine distances (CSV) and one montage PNG per input."""
    from sonokit.retrieval.runs import find_similar

    quiet_command(quiet)
    csv, montages, errors = find_similar(
        run,
        list(inputs),
        out,
        k=k,
        data=data,
        device=device,
        rebuild=rebuild,
        max_montages=max_montages,
        distinct=not all_frames,
    )
    for err in errors:
        typer.echo(f"error: {err}", err=True)
    if csv is not None:
        typer.echo(f"wrote {csv} and {len(montages)} montage(s)")
    if errors:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("uncertainty")(uncertainty_cmd)
    app.command("similar")(similar_cmd)
