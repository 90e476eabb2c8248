"""ED/ES detection on LV size curves with known beats."""

import numpy as np
import pytest

from sonokit.echo.beats import beat_efs, find_beats
from sonokit.errors import InputError


def _volume_curve(
    fps: float, bpm: float, n: int, edv: float, esv: float, noise: float, seed: int
) -> np.ndarray:
    t = np.arange(n) / fps
    phase = 0.5 - 0.5 * np.cos(2 * np.pi * bpm / 60 * t)  # 0 at ED, 1 at ES
    rng = np.random.default_rng(seed)
    return edv - (edv - esv) * phase + rng.normal(0, noise, n)


@pytest.mark.parametrize("bpm,fps", [(60, 50), (90, 30), (120, 50)])
def test_beats_found_at_the_true_ed_and_es(bpm: float, fps: float) -> None:
    n = int(4 * fps)
    volume = _volume_curve(fps, bpm, n, edv=120, esv=60, noise=0.5, seed=1)
    beats = find_beats(volume, fps=fps)
    period = fps * 60 / bpm
    expected_beats = int(np.floor((n - 1 - period / 2) / period)) + 1
    assert len(beats) == expected_beats
    for beat in beats:
        # ED at multiples of the period, ES half a period later (within 2 frames)
        assert min(abs(beat.ed - k * period) for k in range(10)) <= 2
        assert abs((beat.es - beat.ed) - period / 2) <= 2
    efs = beat_efs(volume, beats)
    assert np.allclose(efs, 50.0, atol=2.5)


def test_flat_curve_has_no_beats_and_bad_curves_fail() -> None:
    assert find_beats(np.full(50, 3.0), fps=50) == []
    with pytest.raises(InputError):
        find_beats(np.array([1.0, np.nan, 2.0, 3.0]), fps=50)
    with pytest.raises(InputError):
        find_beats(np.array([1.0, 2.0]), fps=50)


@pytest.mark.parametrize("start_phase,cycles", [(0.25, 2.6), (0.0, 2.35)])
def test_partial_beats_at_the_edges_are_left_out(start_phase: float, cycles: float) -> None:
    """A cine cut mid-systole at its start or its end: only complete beats count, each at its true EF (50)."""
    fps, bpm = 50.0, 75.0
    n = int(cycles * fps * 60 / bpm)
    t = np.arange(n) / fps + start_phase * 60 / bpm
    volume = 120 - 60 * (0.5 - 0.5 * np.cos(2 * np.pi * bpm / 60 * t))
    beats = find_beats(volume, fps=fps)
    assert len(beats) == 2
    assert np.allclose(beat_efs(volume, beats), 50.0, atol=1.0)
    # without the edge rule the cut-off beat is counted, with an EF far below 50
    loose = find_beats(volume, fps=fps, edge_tolerance=10.0)
    assert len(loose) == 3 and beat_efs(volume, loose).min() < 40


def test_a_bump_in_diastole_is_not_a_beat() -> None:
    """An outline that swells and dips between ES and the next ED (here the LV area a U-Net gave on a simulated
    cine at 28.44 fps, its base drawn narrower as the mitral valve opens) makes a peak of its own; its "beat" (EF
    near 0) is left out and the true beats stay."""
    area = np.array([
        1360, 1354, 1303, 1231, 1125, 1047, 942, 870, 836, 832, 852, 850, 893, 927, 1061, 1110, 1198, 1321, 1194,
        1218, 1200, 1206, 1203, 1207, 1184, 1207, 1305, 1347, 1382, 1406, 1372, 1364, 1336, 1286, 1190, 1099, 1023,
        931, 875, 845, 858, 855, 849, 902, 970, 1063, 1167, 1261, 1145, 1133, 1134, 1127, 1152, 1162, 1176, 1195,
        1296, 1312, 1357, 1371, 1356, 1350, 1360, 1306, 1223, 1152,
    ], dtype=float)  # fmt: skip
    loose = find_beats(area, fps=28.44, min_drop=0.0)
    assert [(b.ed, b.es) for b in loose] == [(0, 9), (18, 23), (29, 40), (47, 50)]
    assert beat_efs(area, loose).min() < 5
    beats = find_beats(area, fps=28.44)
    assert [(b.ed, b.es) for b in beats] == [(0, 9), (29, 40)]
