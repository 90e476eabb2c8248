"""The one augmentation vocabulary: `AugmentConfig`, the typed `augment:` mapping of every training config.

Why typed: `augment.rotaton_deg: 5` or `augment.translate: 3` must fail when the config is read, naming the
option, not train a model without the augmentation that was asked for. Each task says which of these options it
applies (`Task.augment_options`); one it would ignore is refused when training augmentation is built.

No torch here: the config layer (sonokit.core.config) reads it without importing torch.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator


def _number(value: Any) -> int | float:
    """A number kept as given (5 stays 5, not 5.0): the config hash is over these values, so a run keeps its hash."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, got {value!r}")
    return value


def _range(value: Any) -> tuple[int | float, int | float] | None:
    """null or [low, high] with 0 < low <= high; YAML gives lists, kept as tuples so configs compare equal."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"must be null or a range [low, high], got {value!r}")
    lo, hi = (_number(v) for v in value)
    if not 0 < lo <= hi:
        raise ValueError(f"must be a range 0 < low <= high, got {list(value)}")
    return (lo, hi)


Number = Annotated[int | float, PlainValidator(_number)]
Range = Annotated[tuple[int | float, int | float] | None, PlainValidator(_range)]


class AugmentConfig(BaseModel):
    """Each augmentation is switched off by setting it to 0 / null / [1, 1] / false; `enabled: false` turns every
    augmentation of the task off.

    hflip stays False by default: mirroring swaps left and right heart chambers in an echo view, so only tasks
    where laterality carries no meaning (lung, fetal planes, image quality) should turn it on.
    """

    model_config = ConfigDict(extra="forbid")

    rotation_deg: Number = Field(10.0, description="random rotation within +-degrees")
    translate: Number = Field(0.1, description="random shift up to this fraction of the side (<= 1)")
    zoom: Range = Field((0.9, 1.1), description="random scale drawn from [low, high]")
    gamma: Range = Field((0.8, 1.2), description="gamma correction with gamma drawn from [low, high]")
    brightness: Number = Field(0.1, description="ColorJitter brightness")
    contrast: Number = Field(0.1, description="ColorJitter contrast")
    blur_sigma: Range = Field((0.1, 1.0), description="Gaussian blur sigma range (pixels)")
    blur_p: Number = Field(0.2, description="probability of the blur (<= 1)")
    hflip: bool = Field(False, description="mirror half the training images (never where it swaps anatomy)")
    appearance: Number = Field(
        0.0,
        description="strength of the scanner-look restyling (sonokit.augment.appearance: grey-level curve, gain, "
        "depth/TGC and lateral gain, speckle grain, blur, noise); 0 = off, 1 = the echo tasks' strength",
    )
    enabled: bool = Field(True, description="false: no training augmentation at all")

    @field_validator("rotation_deg", "translate", "brightness", "contrast", "blur_p", "appearance")
    @classmethod
    def _non_negative(cls, value: int | float, info: Any) -> int | float:
        if value < 0:
            raise ValueError(f"must be >= 0, got {value}")
        if info.field_name in ("translate", "blur_p") and value > 1:
            raise ValueError(f"must be <= 1, got {value}")
        return value

    def __eq__(self, other: object) -> bool:
        # the set options count too: they are what config.yaml stores and the hash covers, so equal configs
        # always hash the same (`{}` and `{rotation_deg: 10.0}` train alike but are different configs)
        if not isinstance(other, AugmentConfig):
            return NotImplemented
        return self.given() == other.given() and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, like every pydantic model

    def given(self) -> dict[str, Any]:
        """The options the config set, as a YAML mapping: what config.yaml stores and the config hash covers
        (a run folder's `augment: {hflip: true}` loads, saves and hashes as it always did)."""
        return {
            name: list(getattr(self, name)) if isinstance(getattr(self, name), tuple) else getattr(self, name)
            for name in type(self).model_fields
            if name in self.model_fields_set
        }

    def changed(self, baseline: AugmentConfig | None = None) -> list[str]:
        """Options whose value differs from the default (or from `baseline`): those a task must apply or refuse."""
        base = baseline if baseline is not None else type(self)()
        return [name for name in type(self).model_fields if getattr(self, name) != getattr(base, name)]

    def to_dict(self) -> dict[str, Any]:
        """Every option with its value (ranges as lists)."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in ((n, getattr(self, n)) for n in type(self).model_fields)
        }


#: every option: what the torchvision v2 pipeline (build_augment) applies, so image tasks take them all
AUGMENT_OPTIONS: frozenset[str] = frozenset(AugmentConfig.model_fields)
