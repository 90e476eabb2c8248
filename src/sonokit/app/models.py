"""The selected runs, loaded once per Selection and reused for every upload, with what each run has fitted.

A run that fails to load is recorded in `Models.errors` and the others still load. What the classifiers need
beside their weights is taken per run folder, once, from the same places the command line takes it:

    similar cases      RUN/index/ (sonokit.retrieval.runs.load_or_build_index; built and saved when missing)
    applicability      RUN/applicability/ (sonokit.uncertainty.applicability.load_or_fit; fitted when missing)
    calibration        RUN/uncertainty/ (sonokit.uncertainty.scorer.UncertaintyScorer, written by `sonokit
                       uncertainty RUN`): the very state `sonokit predict --uncertainty` scores with, so the
                       page and the CLI give one temperature, one conformal set and one abstention per input
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sonokit.app.choices import Selection
from sonokit.app.failures import SYSTEM_ERRORS, one_line
from sonokit.core.run import load_run
from sonokit.errors import InputError, SonokitError
from sonokit.systems import QUALITY
from sonokit.utils import get_logger

log = get_logger(__name__)


@dataclass
class Models:
    """Loaded runs for one Selection (load once, reuse for every upload)."""

    selection: Selection
    echo: list[Any] = field(default_factory=list)  # sonokit.echo.predict.EchoModel
    classifiers: list[Any] = field(default_factory=list)  # sonokit.predict.LoadedRun
    quality: Any = None
    cascade: Any = None
    errors: dict[str, str] = field(default_factory=dict)  # run folder -> why it could not be loaded
    _scorer: dict[str, Any] = field(default_factory=dict, repr=False)
    _ef_q: dict[tuple[str, float], tuple[float | None, str]] = field(default_factory=dict, repr=False)
    _index: dict[str, Any] = field(default_factory=dict, repr=False)
    _applicability: dict[str, Any] = field(default_factory=dict, repr=False)


def load_models(selection: Selection, device: str = "auto") -> Models:
    """Load every selected run; a run that fails is recorded in `errors` and the others still load."""
    models = Models(selection)

    def attempt(key: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except SYSTEM_ERRORS as err:
            models.errors[key] = one_line(err)
            log.warning("cannot load %s: %s", key, one_line(err))
            return None

    for d in (selection.ef, selection.lv):
        if d:  # one run at a time: a broken LV run leaves the EF run working
            from sonokit.echo.predict import load_echo_models

            loaded = attempt(d, lambda d=d: load_echo_models([d], device))
            if loaded:  # its columns are named by its role: ef_video, edv_seg ...
                models.echo.append(dataclasses.replace(loaded[0], key=loaded[0].role))
    for d in selection.classifiers:
        run = attempt(d, lambda d=d: _load_classifier(d, device))
        if run is not None:
            models.classifiers.append(run)
    if selection.quality:
        models.quality = attempt(
            selection.quality, lambda: QUALITY.require(load_run(selection.quality, device), "gate")
        )
    if selection.av_detect and selection.av_calcification:
        from sonokit.av.cascade import Cascade

        models.cascade = attempt(
            selection.av_detect,
            lambda: Cascade(selection.av_detect, selection.av_calcification, device, applicability=True),
        )
    elif selection.av_detect or selection.av_calcification:
        models.errors[selection.av_detect or selection.av_calcification or ""] = (
            "the aortic-valve cascade needs both an av-detect and an av-calcification run"
        )
    return models


def _load_classifier(run_dir: str, device: str) -> Any:
    """A run whose task has classes (any classifier, plug-ins too); another run is refused with one line."""
    run = load_run(run_dir, device)
    if run.task.kind != "classification" or not run.task.classes:
        raise InputError(f"a {run.task.name!r} run is not an image classifier", run_dir)
    return run


# ---------------------------------------------------------------------------------------------- per run


def _per_run(cache: dict[str, Any], run: Any, build: Callable[[Any], Any], unavailable: str) -> Any:
    """`build(run)` once per run folder, kept in `cache`; on failure the one-line reason, prefixed."""
    key = str(run.run_dir)
    if key not in cache:
        try:
            cache[key] = build(run)
        except (SonokitError, OSError, ValueError) as err:
            cache[key] = f"{unavailable}: {one_line(err)}"
    return cache[key]


def similar_index(models: Models, run: Any) -> Any:
    """The run's training-set embedding index, or why there is none."""
    from sonokit.retrieval.runs import load_or_build_index

    return _per_run(models._index, run, load_or_build_index, "similar cases unavailable")


def applicability(models: Models, run: Any) -> Any:
    """The run's applicability scorer (fitted now and saved in the run folder when missing), or why there is none."""
    from sonokit.uncertainty.applicability import load_or_fit

    return _per_run(models._applicability, run, load_or_fit, "no applicability check")


def uncertainty_scorer(models: Models, run: Any) -> Any:
    """The UncertaintyScorer `sonokit uncertainty RUN` fitted for these weights, or why there is none.

    Not fitted here: that analysis embeds every split of the run's data. The page reloads its models when the
    state is (re)written (sonokit.app.main._stamp)."""
    from sonokit.retrieval.runs import weights_fingerprint
    from sonokit.uncertainty.scorer import UncertaintyScorer

    def load(run: Any) -> Any:
        return UncertaintyScorer.load(run.run_dir, weights_fingerprint(run.run_dir))

    return _per_run(models._scorer, run, load, "no conformal set or abstention")
