"""Leaf of the report: how a number and an estimate with its interval are written into an HTML table.

One place for the report page (html.py) and its per-task block (multitask.py), which html.py imports.
"""

from __future__ import annotations

import html
import math


def escape(text) -> str:
    return html.escape(str(text))


def fmt(x, signed: bool = False) -> str:
    """3 decimals (signed for differences); a missing or non-finite value is a dash."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if abs(x) >= 100:
        return f"{x:+.0f}" if signed else f"{x:.0f}"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def estimate_cell(est: dict | None, signed: bool = False, *, show_n: bool = True) -> str:
    """A table cell: the estimate's value, its interval below it and (show_n) the seeds it rests on."""
    if not est or est.get("value") is None:
        return '<td class="num">–</td>'
    ci = "" if est.get("low") is None else f"<br><small>[{fmt(est['low'], signed)}, {fmt(est['high'], signed)}]</small>"
    n = f"<br><small>n={est['n']}</small>" if show_n else ""
    return f'<td class="num">{fmt(est["value"], signed)}{ci}{n}</td>'
