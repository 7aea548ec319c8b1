"""Argument checks shared by the supply modules: each failure is a ``SupplyInputError`` whose
message names the argument, what was expected and what was given."""

from __future__ import annotations

import math
import numbers

from pharmalab.errors import SupplyInputError


def real(name: str, value: object) -> float:
    """``value`` as a finite float, else ``SupplyInputError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SupplyInputError(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise SupplyInputError(f"{name} must be a finite number, got {value!r}")
    return out


def positive(name: str, value: object) -> float:
    out = real(name, value)
    if out <= 0:
        raise SupplyInputError(f"{name} must be > 0, got {value!r}")
    return out


def nonnegative(name: str, value: object) -> float:
    out = real(name, value)
    if out < 0:
        raise SupplyInputError(f"{name} must be >= 0, got {value!r}")
    return out


def probability(name: str, value: object) -> float:
    """A probability strictly inside (0, 1): service levels, fill rates, quantile levels."""
    out = real(name, value)
    if not 0.0 < out < 1.0:
        raise SupplyInputError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return out


def positive_int(name: str, value: object) -> int:
    out = real(name, value)
    if out < 1 or out != int(out):
        raise SupplyInputError(f"{name} must be a positive integer, got {value!r}")
    return int(out)


def integer(name: str, value: object) -> int:
    out = real(name, value)
    if out != int(out):
        raise SupplyInputError(f"{name} must be an integer for discrete demand, got {value!r}")
    return int(out)


def optional(check, name: str, value: object):
    """``check(name, value)`` unless ``value`` is None."""
    return None if value is None else check(name, value)
