"""Entry point of the `sonokit` command: builds the typer app and turns sonokit errors into one-line messages.

Command modules import heavy libraries (torch, pydicom, cv2) inside their functions so that `sonokit --help`
and light commands start fast.
"""

from __future__ import annotations

import logging
import sys

import typer

from sonokit import __version__
from sonokit.errors import SonokitError
from sonokit.utils.logs import set_quiet
from sonokit.utils.paths import printable

app = typer.Typer(
    name="sonokit",
    help="Deep learning on medical ultrasound: scanner files to trained, evaluated, explainable models.\n\n"
    "Research software, not for clinical use.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sonokit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, warnings only."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    set_quiet(quiet)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:  # pydicom logs each failing decoder plugin with a traceback before sonokit's one line
        logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def _register() -> None:
    """Attach every command module. The order here is the order in `sonokit --help`."""
    from sonokit.cli import demo, ingest

    demo.register(app)
    ingest.register(app)
    from sonokit.cli import synth as synth_cli

    synth_cli.register(app)
    from sonokit.cli import models as models_cli

    models_cli.register(app)
    from sonokit.cli import engine as engine_cli

    engine_cli.register(app)
    from sonokit.cli import pretrain as pretrain_cli

    pretrain_cli.register(app)
    from sonokit.cli import export as export_cli

    export_cli.register(app)
    from sonokit.cli import uncertainty as uncertainty_cli

    uncertainty_cli.register(app)
    from sonokit.cli import ef

    ef.register(app)
    from sonokit.cli import quality as quality_cli

    quality_cli.register(app)
    from sonokit.cli import av as av_cli

    av_cli.register(app)
    from sonokit.cli import app as app_cli

    app_cli.register(app)
    from sonokit.cli import cache as cache_cli

    cache_cli.register(app)


_register()


def main() -> None:
    """Console-script entry: run the app; a SonokitError becomes `error: ...` on stderr and exit code 2."""
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 must never stop the output
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        # standalone_mode=False makes click return (not raise) the code of `raise typer.Exit(code)`
        rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except SonokitError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except OSError as err:  # a full disk, a read-only output folder: one line, not a traceback
        where = printable(err.filename) if err.filename else "cannot write or read"
        typer.echo(f"error: {where}: {err.strerror or err}", err=True)
        sys.exit(1)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as err:  # usage errors arrive here in standalone_mode=False (typer vendors click,
        # so match the ClickException interface rather than a class)
        if callable(getattr(err, "show", None)) and isinstance(getattr(err, "exit_code", None), int):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
