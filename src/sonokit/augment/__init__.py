"""Seeded training augmentation on torchvision transforms v2 (image corruptions live in augment.corruption)."""

from sonokit.augment.transforms import (
    Augment,
    AugmentConfig,
    RandomGamma,
    SeededTransform,
    build_augment,
    build_transform,
    derive_seed,
)

__all__ = [
    "Augment",
    "AugmentConfig",
    "RandomGamma",
    "SeededTransform",
    "build_augment",
    "build_transform",
    "derive_seed",
]
