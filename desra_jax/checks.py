"""Checks of the numbers a command's options (and the settings they hold) take, made when the options are built,
before any work: a value outside its range is one ValueError naming the option as the command's flag does
(``--tile_pad: expected a whole number of at least 0, got -1``), so that nothing runs for minutes and then fails,
or runs and means nothing (a NaN threshold marks no pixel)."""

from __future__ import annotations

import math
import numbers


def check_number(name: str, value, low: float | None = None, high: float | None = None, *, above: bool = False,
                 whole: bool = False) -> None:
    """ValueError ``'<name>: expected a finite number at least <low> and at most <high>, got <value>'`` unless
    ``value`` is a finite real number (an integer with ``whole``) in [``low``, ``high``] (``above``: > ``low``);
    a bound of None is no bound."""
    kind = "a whole number" if whole else "a finite number"
    ok = isinstance(value, numbers.Integral if whole else numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    bounds = []
    if low is not None:
        bounds.append(f"above {low:g}" if above else f"at least {low:g}")
        ok = ok and (value > low if above else value >= low)
    if high is not None:
        bounds.append(f"at most {high:g}")
        ok = ok and value <= high
    if not ok:
        within = " " + " and ".join(bounds) if bounds else ""
        raise ValueError(f"{name}: expected {kind}{within}, got {value!r}")
