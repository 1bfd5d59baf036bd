"""Operator typing errors when a patient is keyed by hand (the source of real data faults).

With `operator_typo_rate` > 0 each hand-typed Patient ID and Accession Number gets, with that
probability, one realistic error: two adjacent characters transposed, a character dropped, a
character doubled, or the wrong case. The RNG is seeded from the node's seed, the registration
number and the field, so the same registrations give the same errors.
"""

from __future__ import annotations

import random


def typing_rng(seed: int, registration: int, field: str) -> random.Random:
    return random.Random(f"simlab-typo|{seed}|{registration}|{field}")


def mistype(value: str, rng: random.Random) -> tuple[str, str]:
    """One typing error in `value`: (typed value, kind of error) or (value, '') if none fits."""
    kinds = []
    if len(value) >= 2 and any(value[i] != value[i + 1] for i in range(len(value) - 1)):
        kinds.append("transposed")
    if len(value) >= 2:
        kinds.append("dropped")
    if value:
        kinds.append("doubled")
    if any(c.isalpha() for c in value):
        kinds.append("wrong case")
    if not kinds:
        return value, ""
    kind = rng.choice(kinds)
    if kind == "transposed":
        pairs = [i for i in range(len(value) - 1) if value[i] != value[i + 1]]
        digits = [i for i in pairs if value[i].isdigit() and value[i + 1].isdigit()]
        i = rng.choice(digits or pairs)
        return value[:i] + value[i + 1] + value[i] + value[i + 2 :], kind
    if kind == "dropped":
        i = rng.randrange(len(value))
        return value[:i] + value[i + 1 :], kind
    if kind == "doubled":
        i = rng.randrange(len(value))
        return value[: i + 1] + value[i] + value[i + 1 :], kind
    letters = [i for i, c in enumerate(value) if c.isalpha()]
    i = rng.choice(letters)
    return value[:i] + value[i].swapcase() + value[i + 1 :], kind


def keyed(value: str, rate: float, seed: int, registration: int, field: str) -> tuple[str, str]:
    """What the operator actually typed for `value`: (typed, error kind or '')."""
    if not value or rate <= 0:
        return value, ""
    rng = typing_rng(seed, registration, field)
    if rng.random() >= rate:
        return value, ""
    return mistype(value, rng)
