"""B-mode image formation: a fast approximation of the physics, shared by every phantom.

Pipeline, all in beam space (range x beam) on a complex baseband (IQ) signal:

1. scatterers: circular complex Gaussian per sample (fully developed speckle), scaled by sqrt(echogenicity);
   coherent (specular) reflectors add a smooth amplitude; absorbers (bone, calcium, ribs) shadow the samples
   behind them along the beam;
2. point-spread function: separable convolution with a modulated axial Gaussian pulse and a lateral Gaussian
   beam (OpenCV sepFilter2D, or an FFT as the benchmark's alternative);
3. depth attenuation exp(-a r), electronic noise, then time-gain compensation (imperfect: it is drawn per case);
4. envelope |IQ|, log compression with a per-case gain and dynamic range, a grey-map gamma;
5. scan conversion into the fan with cv2.remap (see `scan.py`).

Speckle decorrelates between frames through an AR(1) mixture of scatterer fields and moves with the tissue
through `warp_scatter`. The speckle grain is matched to the output resolution (what downsampled clinical videos
show), which is why PSF widths are given in beam samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sonokit.synth.scan import BeamGrid, ProbeGeometry, ScanConverter, beam_grid, scan_converter


@dataclass(frozen=True)
class Acquisition:
    """Scanner settings drawn per case so that models cannot key on one fixed look."""

    gain_db: float = 0.0
    dynamic_range_db: float = 50.0
    atten_db_cm: float = 1.5  # two-way amplitude attenuation of the tissue
    tgc_db_cm: float = 1.5  # compensation the operator dialled in
    noise_db: float = -48.0  # electronic noise power relative to echogenicity-1 tissue
    axial_sigma: float = 0.9  # PSF widths in beam samples
    lateral_sigma: float = 1.1
    pulse_freq: float = 0.12  # residual carrier of the demodulated pulse, cycles per sample
    gamma: float = 1.0
    tgc_nodes_db: tuple[
        float, ...
    ] = ()  # the operator's TGC sliders: gain at evenly spaced depths, skin to max
    edge_db: float = 0.0  # signal loss at the fan's edges (apodization, element directivity)
    power_blur: float = 0.0  # Gaussian sigma (beam samples) on the envelope power: speckle averaged by a
    # downsampled export (a 112-px EchoNet frame averages many scanner pixels), lowering speckle contrast


def random_acquisition(rng: np.random.Generator, **overrides: float) -> Acquisition:
    """Per-case scanner settings: gain, dynamic range, TGC mismatch, noise, PSF size, grey map."""
    atten = float(rng.uniform(0.8, 2.2))
    values = dict(
        gain_db=float(rng.normal(0.0, 2.5)),
        dynamic_range_db=float(rng.uniform(42.0, 60.0)),
        atten_db_cm=atten,
        tgc_db_cm=float(atten * rng.uniform(0.75, 1.1)),
        noise_db=float(rng.uniform(-58.0, -42.0)),
        axial_sigma=float(rng.uniform(0.7, 1.2)),
        lateral_sigma=float(rng.uniform(0.9, 1.6)),
        pulse_freq=float(rng.uniform(0.05, 0.2)),
        gamma=float(rng.uniform(0.8, 1.25)),
    )
    values.update(overrides)
    return Acquisition(**values)


@dataclass
class Tissue:
    """What a phantom returns on a beam grid. All arrays are (n_r, n_l) float32.

    echo: diffuse echogenicity (power; 1 = bright tissue, ~1e-3 blood);
    specular: coherent reflection amplitude (pleura, bone surfaces, valve edges), or None;
    absorb: extra two-way attenuation in nepers per mm that shadows everything behind it, or None;
    masks: named ground-truth masks in beam space (e.g. B-lines) that the caller scan-converts.
    """

    echo: np.ndarray
    specular: np.ndarray | None = None
    absorb: np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def complex_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """(n_r, n_l, 2) float32 circular complex Gaussian with E|s|^2 = 1 (real and imaginary as channels)."""
    return rng.standard_normal((*shape, 2), dtype=np.float32) * np.float32(np.sqrt(0.5))


class NoisePool:
    """Cheap fresh noise for cines: random windows into one pre-drawn field twice the size in each axis.

    Drawing Gaussians costs ~30 ns each, more than the rest of a frame; windows at distinct offsets of white
    noise are uncorrelated, so innovations and electronic noise keep their statistics at a fraction of the cost.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], factor: int = 2) -> None:
        self.rng, self.shape = rng, shape
        self.pool = complex_noise(rng, (shape[0] * factor, shape[1] * factor))

    def __call__(self) -> np.ndarray:
        r = int(self.rng.integers(self.pool.shape[0] - self.shape[0] + 1))
        c = int(self.rng.integers(self.pool.shape[1] - self.shape[1] + 1))
        return self.pool[r : r + self.shape[0], c : c + self.shape[1]]


def ar1_step(
    scatter: np.ndarray, rng: np.random.Generator, rho: float, pool: NoisePool | None = None
) -> np.ndarray:
    """Next scatterer field of an AR(1) process: rho * previous + sqrt(1 - rho^2) * fresh (unit power kept)."""
    fresh = pool() if pool is not None else complex_noise(rng, scatter.shape[:2])
    return scatter * np.float32(rho) + fresh * np.float32(np.sqrt(max(0.0, 1.0 - rho * rho)))


def warp_scatter(scatter: np.ndarray, map_row: np.ndarray, map_col: np.ndarray) -> np.ndarray:
    """Sample a scatterer field at fractional beam indices (tissue motion), keeping unit speckle power.

    Bilinear interpolation of white noise loses variance between samples; dividing by the interpolation
    weights' norm restores it, so moving tissue does not flicker in brightness.
    """
    import cv2

    mx = map_col.astype(np.float32)
    my = map_row.astype(np.float32)
    out = cv2.remap(scatter, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    fx = mx - np.floor(mx)
    fy = my - np.floor(my)
    norm = ((1 - fx) ** 2 + fx**2) * ((1 - fy) ** 2 + fy**2)
    return out / np.sqrt(norm)[..., None]


def _gauss(sigma: float, radius: int) -> np.ndarray:
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    return np.exp(-0.5 * (k / max(sigma, 1e-3)) ** 2)


class BModeRenderer:
    """Image formation for one case: fixed probe, beam grid, scanner settings and output size.

    `frame(tissue, scatter, rng)` gives one uint8 (size, size) picture. Construction precomputes the PSF
    kernels, the depth gain curve and the scan-conversion tables, so per-frame work is a handful of
    vectorised passes over ~15k samples at 112 px.
    """

    def __init__(
        self,
        geom: ProbeGeometry,
        acq: Acquisition,
        size: int,
        beams: tuple[int, int] | None = None,
        method: str = "sepconv",
        dtype: type = np.float32,
    ) -> None:
        if method not in ("sepconv", "fft"):
            raise ValueError(f"unknown convolution method {method!r}")
        self.geom, self.acq, self.size, self.method, self.dtype = geom, acq, size, method, dtype
        n_r, n_l = beams or (int(round(size * 1.25)), int(round(size * 1.0)))
        self.grid: BeamGrid = beam_grid(geom, n_r, n_l)
        self.converter: ScanConverter = scan_converter(geom, n_r, n_l, size)
        # axial: Gaussian pulse with a residual carrier; lateral: Gaussian beam. Unit energy overall.
        ra = int(np.ceil(3 * acq.axial_sigma))
        rl = int(np.ceil(3 * acq.lateral_sigma))
        env = _gauss(acq.axial_sigma, ra)
        phase = 2 * np.pi * acq.pulse_freq * np.arange(-ra, ra + 1)
        lat = _gauss(acq.lateral_sigma, rl)
        energy = np.sum(env**2) * np.sum(lat**2)
        scale = 1.0 / np.sqrt(energy)
        self.k_ax_re = (env * np.cos(phase) * scale).astype(dtype)
        self.k_ax_im = (env * np.sin(phase) * scale).astype(dtype)
        self.k_lat = lat.astype(dtype)
        d_cm = self.grid.depth[:, 0].astype(np.float64) / 10.0
        att = 10 ** (-acq.atten_db_cm * d_cm / 20)
        tgc = 10 ** (acq.tgc_db_cm * d_cm / 20)
        if acq.tgc_nodes_db:  # receive gain: scales signal and electronic noise alike
            nodes = np.asarray(acq.tgc_nodes_db, dtype=np.float64)
            pos = np.linspace(0.0, float(d_cm[-1]), len(nodes))
            tgc = tgc * 10 ** (np.interp(d_cm, pos, nodes) / 20)
        self.row_signal = (att * tgc).astype(dtype)[:, None]
        self.row_noise = (tgc * 10 ** (acq.noise_db / 20)).astype(dtype)[:, None]
        if acq.edge_db:  # (n_r, n_l): weaker beams towards the fan's edges
            lat = np.linspace(-1.0, 1.0, self.grid.n_l)
            col = 10 ** (-acq.edge_db * np.abs(lat) ** 3 / 20)
            self.row_signal = (self.row_signal * col[None, :]).astype(dtype)
        self.top_db = 12.0 - acq.gain_db  # echogenicity-1 speckle sits at ~75 % grey
        self.dr_db = acq.dynamic_range_db
        if method == "fft":
            self._init_fft(ra, rl)

    def _init_fft(self, ra: int, rl: int) -> None:
        from scipy import fft

        n_r, n_l = self.grid.shape
        self._pad = (ra, rl)
        shape = (fft.next_fast_len(n_r + 2 * ra), fft.next_fast_len(n_l + 2 * rl))
        kern = np.zeros(shape, dtype=np.complex128)
        # OpenCV filters by correlation; flip so both variants compute the same thing
        k2 = ((self.k_ax_re + 1j * self.k_ax_im)[:, None] * self.k_lat[None, :])[::-1, ::-1]
        kern[: k2.shape[0], : k2.shape[1]] = k2
        kern = np.roll(kern, (-ra, -rl), axis=(0, 1))
        ctype = np.complex64 if self.dtype == np.float32 else np.complex128
        self._fft_shape = shape
        self._kernel_f = fft.fft2(kern, workers=1).astype(ctype)

    @property
    def fan(self) -> np.ndarray:
        return self.converter.fan

    def new_scatter(self, rng: np.random.Generator) -> np.ndarray:
        return complex_noise(rng, self.grid.shape).astype(self.dtype, copy=False)

    def psf(self, field_: np.ndarray) -> np.ndarray:
        """Convolve a (n_r, n_l, 2) IQ field with the complex separable PSF."""
        if self.method == "fft":
            return self._psf_fft(field_)
        import cv2

        c_re = cv2.sepFilter2D(field_, -1, self.k_lat, self.k_ax_re, borderType=cv2.BORDER_REFLECT)
        c_im = cv2.sepFilter2D(field_, -1, self.k_lat, self.k_ax_im, borderType=cv2.BORDER_REFLECT)
        out = np.empty_like(field_)
        out[..., 0] = c_re[..., 0] - c_im[..., 1]
        out[..., 1] = c_im[..., 0] + c_re[..., 1]
        return out

    def _psf_fft(self, field_: np.ndarray) -> np.ndarray:
        from scipy import fft

        ra, rl = self._pad
        z = field_[..., 0] + 1j * field_[..., 1]
        z = np.pad(z, ((ra, ra), (rl, rl)), mode="symmetric")  # = cv2.BORDER_REFLECT
        f = fft.fft2(z, s=self._fft_shape, workers=1)
        y = fft.ifft2(f * self._kernel_f, workers=1)[ra : ra + field_.shape[0], rl : rl + field_.shape[1]]
        return np.stack([y.real, y.imag], axis=-1).astype(self.dtype, copy=False)

    def noise_pool(self, rng: np.random.Generator) -> NoisePool:
        """A pool for cines: pass it to `frame`/`ar1_step` so each frame draws no new Gaussians."""
        return NoisePool(rng, self.grid.shape)

    def beam_image(
        self, tissue: Tissue, scatter: np.ndarray, rng: np.random.Generator, pool: NoisePool | None = None
    ) -> np.ndarray:
        """Log-compressed beam-space image in [0, 1] (float32, (n_r, n_l))."""
        dt = self.dtype
        amp = np.sqrt(np.maximum(tissue.echo, 0), dtype=dt)
        iq = scatter * amp[..., None]
        if tissue.specular is not None:
            iq[..., 0] += tissue.specular.astype(dt, copy=False)
        if tissue.absorb is not None:
            a = tissue.absorb.astype(dt, copy=False)
            cum = np.cumsum(a, axis=0) - 0.5 * a
            iq *= np.exp(-cum * np.float32(self.grid.dr_mm))[..., None]
        iq = self.psf(iq)
        iq *= self.row_signal[..., None]
        noise = pool() if pool is not None else complex_noise(rng, self.grid.shape)
        iq += noise.astype(dt, copy=False) * self.row_noise[..., None]
        power = iq[..., 0] ** 2 + iq[..., 1] ** 2
        if self.acq.power_blur > 0:
            import cv2

            power = cv2.GaussianBlur(power, (0, 0), sigmaX=self.acq.power_blur, sigmaY=self.acq.power_blur)
        db = 10.0 * np.log10(power + dt(1e-12))
        img = np.clip((db - (self.top_db - self.dr_db)) / self.dr_db, 0.0, 1.0)
        if self.acq.gamma != 1.0:
            img **= dt(self.acq.gamma)
        return img.astype(np.float32, copy=False)

    def to_image(self, beam: np.ndarray) -> np.ndarray:
        """Scan-convert a [0, 1] beam image into a uint8 (size, size) picture."""
        img = self.converter(beam)
        return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def frame(
        self, tissue: Tissue, scatter: np.ndarray, rng: np.random.Generator, pool: NoisePool | None = None
    ) -> np.ndarray:
        return self.to_image(self.beam_image(tissue, scatter, rng, pool))

    def mask_to_image(self, mask: np.ndarray) -> np.ndarray:
        """Scan-convert a beam-space ground-truth mask (nearest sample) to a bool (size, size) image."""
        import cv2

        return self.converter(mask.astype(np.uint8), cv2.INTER_NEAREST).astype(bool) & self.fan


def render_bmode(
    echogenicity: np.ndarray | None = None,
    geom: ProbeGeometry | None = None,
    acq: Acquisition | None = None,
    size: int = 112,
    n_frames: int = 1,
    seed: int = 0,
    rho: float = 0.9,
    method: str = "sepconv",
    dtype: type = np.float32,
    pooled_noise: bool = True,
) -> np.ndarray:
    """Render `n_frames` uint8 frames (F, size, size) of a static echogenicity map (beam-space (n_r, n_l)).

    With no map, a layered test object (two cysts and a bright wire in graded tissue) is used. Speckle follows
    an AR(1) process with correlation `rho` between frames; `pooled_noise` draws innovations and electronic
    noise from a `NoisePool`. This is the entry point the benchmark times.
    """
    geom = geom or ProbeGeometry(kind="sector", depth_mm=150.0, angle_deg=75.0)
    acq = acq or Acquisition()
    rng = np.random.default_rng(seed)
    renderer = BModeRenderer(geom, acq, size, method=method, dtype=dtype)
    grid = renderer.grid
    if echogenicity is None:
        echogenicity = test_object(grid)
    echo = np.asarray(echogenicity, dtype=np.float32)
    if echo.shape != grid.shape:
        raise ValueError(f"echogenicity must have the beam-grid shape {grid.shape}, got {echo.shape}")
    tissue = Tissue(echo=echo)
    scatter = renderer.new_scatter(rng)
    pool = renderer.noise_pool(rng) if pooled_noise else None
    frames = np.empty((n_frames, size, size), dtype=np.uint8)
    for t in range(n_frames):
        if t:
            scatter = ar1_step(scatter, rng, rho, pool)
        frames[t] = renderer.frame(tissue, scatter, rng, pool)
    return frames


def test_object(grid: BeamGrid) -> np.ndarray:
    """A calibration phantom: tissue getting brighter laterally, two anechoic cysts and a bright wire."""
    x, z = grid.x, grid.z
    depth = float(grid.geom.depth_mm)
    echo = 0.2 + 0.6 * (x - x.min()) / max(float(np.ptp(x)), 1e-6)
    for cx, cz, r in ((-0.15 * depth, 0.45 * depth, 0.08 * depth), (0.12 * depth, 0.7 * depth, 0.06 * depth)):
        echo = np.where((x - cx) ** 2 + (z - cz) ** 2 < r * r, 1e-3, echo)
    echo = np.where((np.abs(z - 0.25 * depth) < 1.0) & (np.abs(x) < 0.1 * depth), 8.0, echo)
    return echo.astype(np.float32)
