"""Seeded random generators: one independent numpy Generator per image, never a global one."""

from __future__ import annotations

import hashlib

import numpy as np


def image_rng(seed: int, *parts: object) -> np.random.Generator:
    """A Generator for one image, from the seed and what names the image (modality, index...).

    Each image gets its own stream, so an image is the same whether a series is generated whole
    or only in part, and in whatever order.
    """
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed}")
    digest = hashlib.sha256(repr(parts).encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([seed, *words])
