"""A cProfile statistics file as time per component, for a benchmark's breakdown table.

Every function's own time (cProfile's ``tottime``) goes to exactly one component, so the
components add up to the whole profile and nothing is counted twice (cumulative times
would count a nested call under each of its callers). A function that the caller's
``classify`` names belongs to that component. Any other function -- a builtin such as
``isinstance`` or ``dict.pop``, a helper such as ``typing.cast`` -- counts for its
callers, in proportion to the own time it spent under each of them (cProfile records
that per caller), and so on up to callers that have a component.
"""

from __future__ import annotations

import pstats
from collections.abc import Callable
from pathlib import Path

#: A profiled function as cProfile names it: (file name, line, function name); builtins
#: have the file name ``"~"``.
Function = tuple[str, int, str]
#: The component of a function, or ``None`` when it counts for its callers.
Classify = Callable[[Function], str | None]

# One caller's share of a function, as pstats stores it: (calls, primitive calls, own
# time, cumulative time).
_Edge = tuple[int, int, float, float]
_Entry = tuple[int, int, float, float, dict[Function, _Edge]]


def attribute(path: str | Path, classify: Classify, *, unnamed: str = "other") -> dict[str, float]:
    """Seconds of own time per component in the cProfile statistics at *path*.

    :param path: a file written by ``cProfile.Profile.dump_stats``.
    :param classify: the component of a function, or ``None`` to count it for its callers.
    :param unnamed: the component of time that reaches no named caller (a root such as
        the profiled call itself, or a cycle of unnamed functions).
    :return: component -> seconds; they add up to the profile's total own time.
    """
    entries: dict[Function, _Entry] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    shares: dict[Function, dict[str, float]] = {}

    def share_of(function: Function, inside: frozenset[Function]) -> dict[str, float]:
        known = shares.get(function)
        if known is not None:
            return known
        named = classify(function)
        if named is not None:
            result = {named: 1.0}
        else:
            callers = entries[function][4] if function in entries else {}
            # By own time under each caller; by calls where no time was measured.
            weights = {caller: edge[2] for caller, edge in callers.items()}
            if sum(weights.values()) <= 0:
                weights = {caller: float(edge[0]) for caller, edge in callers.items()}
            total = sum(weights.values())
            result = {} if total > 0 else {unnamed: 1.0}
            for caller, weight in weights.items():
                if weight <= 0:
                    continue
                # A cycle of unnamed functions ends here.
                above = (
                    {unnamed: 1.0} if caller in inside else share_of(caller, inside | {function})
                )
                for component, part in above.items():
                    result[component] = result.get(component, 0.0) + part * weight / total
        shares[function] = result
        return result

    seconds: dict[str, float] = {}
    for function, (_, _, own, _, _) in entries.items():
        for component, part in share_of(function, frozenset()).items():
            seconds[component] = seconds.get(component, 0.0) + own * part
    return seconds
