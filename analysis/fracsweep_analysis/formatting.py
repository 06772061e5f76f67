"""Numbers as readers see them in tables: significant digits, intervals, fractions as percents."""
from __future__ import annotations

import math

NON_FINITE_TEXT = "non-finite"


def number(value: float, digits: int = 3) -> str:
    """3 significant digits; +inf (a destroyed outcome) is shown as 'non-finite'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return NON_FINITE_TEXT if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def estimate(centre: float, low: float, high: float, digits: int = 3) -> str:
    """'0.94 [0.93, 0.95]'; the interval is left out when it is undefined (a single trial) or
    when every end is the same non-finite value."""
    text = number(centre, digits)
    if math.isnan(low) or math.isnan(high) or (math.isinf(centre) and centre == low == high):
        return text
    return f"{text} [{number(low, digits)}, {number(high, digits)}]"


def percent(fraction: float) -> str:
    """0.001 -> '0.1%'; 0 and inf become the open ends of the swept range in CI texts."""
    if math.isnan(fraction):
        return "—"
    return f"{100.0 * fraction:.3g}%"


def signed(value: float, digits: int = 3) -> str:
    text = number(value, digits)
    return f"+{text}" if math.isfinite(value) and value > 0 else text
