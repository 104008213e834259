"""How many updates each rule needs: one place for the task's validation and the round's aggregation.

Pure and Django-free, like the rules. ``min_updates`` is the smallest N a rule accepts with
its parameters; ``too_few_updates`` says in words why N updates are not enough. Trimmed mean,
median, the means and centered clipping take any N >= 1 (trimmed mean's beta < 0.5 always
keeps at least one value per coordinate); Krum needs N >= 2f + 3 (Blanchard et al. 2017) and
Multi-Krum also N >= m.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _whole(params: Mapping[str, Any], key: str) -> int | None:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        return None
    return int(value)


def min_updates(name: str, params: Mapping[str, Any] | None) -> int:
    """The fewest updates rule ``name`` can aggregate with ``params`` (malformed parameters count as 1)."""
    params = params or {}
    if name in ("krum", "multi_krum"):
        f = _whole(params, "f")
        need = 2 * f + 3 if f is not None and f >= 0 else 1
        m = _whole(params, "m") if name == "multi_krum" else None
        return max(need, m) if m is not None and m >= 1 else need
    return 1


def too_few_updates(name: str, params: Mapping[str, Any] | None, n: int) -> str | None:
    """Why ``n`` updates are too few for rule ``name`` with ``params``; None when they are enough."""
    params = params or {}
    need = min_updates(name, params)
    if n >= need:
        return None
    if name in ("krum", "multi_krum"):
        f, m = _whole(params, "f"), _whole(params, "m")
        why = [f"f={f} needs at least 2f+3 = {2 * f + 3}"] if f is not None and n < 2 * f + 3 else []
        if name == "multi_krum" and m is not None and n < m:
            why.append(f"m={m} averages the {m} best")
        label = "Multi-Krum" if name == "multi_krum" else "Krum"
        return (f"{label} cannot aggregate {n} update{'s' if n != 1 else ''}: {' and '.join(why)}. Raise the "
                f"task's minimum number of participants to at least {need}, or lower the aggregator's parameters.")
    if n == 0:
        return "The round has no updates to aggregate."
    return f"{name} needs at least {need} updates; the round has {n}."


MIN_SECURE_PARTICIPANTS = 3


def participant_problems(name: str, params: Mapping[str, Any] | None,
                         min_participants: int) -> list[tuple[str, str]]:
    """Why rule ``name`` with ``params`` cannot work when a round may close with ``min_participants`` updates:
    ``[(task field at fault, message)]``, empty when it can. Malformed parameters are not reported here."""
    params = params or {}
    out: list[tuple[str, str]] = []
    if name in ("krum", "multi_krum"):
        f = _whole(params, "f")
        if f is not None and f >= 0 and min_participants < 2 * f + 3:
            most_f = (min_participants - 3) // 2
            lower = f"lower f to {most_f}" if most_f >= 0 else "choose another aggregator (Krum needs at least 3)"
            out.append(("min_participants", f"Krum with f={f} needs at least 2f+3 = {2 * f + 3} participants: a "
                        f"round may close with only {min_participants} (the minimum number of participants). Raise "
                        f"the minimum to {2 * f + 3}, or {lower}."))
        m = _whole(params, "m") if name == "multi_krum" else None
        if m is not None and m >= 1 and m > min_participants:
            out.append(("aggregator_params", f"Multi-Krum averages the m={m} best updates, but a round may close "
                        f"with only {min_participants} (the minimum number of participants). Lower m to at most "
                        f"{min_participants}, or raise the minimum number of participants to {m}."))
    elif name == "secure" and min_participants < MIN_SECURE_PARTICIPANTS:
        out.append(("min_participants", f"Secure aggregation needs at least {MIN_SECURE_PARTICIPANTS} participants "
                    "so that no peer can deduce another's update."))
    return out
