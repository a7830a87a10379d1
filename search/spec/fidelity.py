"""The budget ladder of successive halving, and the data share each rung of it learns from.

A scheduler decides at rungs ``grace_period * reduction_factor**k`` below ``max_t`` (``rung_levels``). With
``search.data_fidelity`` below 1 a trial's early epochs are cheap in data as well as in epochs: the epochs up to
the first rung learn from that share of the candidate's training rows, the share grows geometrically at each rung
and reaches every row after the last one (``data_schedule``). The subsets are nested and class-balanced
(``emule_models.train.epoch_rows``), so a trial that goes on keeps what it learned from.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from search.spec.schema import SearchSettings


def rung_levels(grace_period: float, reduction_factor: float, max_t: float) -> tuple[float, ...]:
    """Resource levels where halving decides: ``grace_period * reduction_factor**k`` below ``max_t``.

    Multiplied out rather than taken from logarithms, so 3**5 stays 243 and does not round to 242.99.
    """
    check_budget(grace_period, reduction_factor, max_t)
    levels = []
    level = grace_period
    while level < max_t:
        levels.append(level)
        level *= reduction_factor
    return tuple(levels)


def data_schedule(first_share: float, grace_period: int, reduction_factor: int,
                  epochs: int) -> tuple[tuple[int, float], ...]:
    """(last epoch, share of the training rows) steps for a trial of ``epochs`` epochs: rung k of K learns from
    ``first_share ** ((K - k) / K)`` - ``first_share`` up to the first rung, every row after the last. Empty (every
    row at every epoch) when ``first_share`` is 1 or no rung lies below ``epochs``.

    With grace 1, reduction factor 3, 9 epochs and ``first_share`` 1/9: epoch 1 on 1/9 of the rows, epochs 2-3 on
    1/3, epochs 4-9 on all - the data grows by the reduction factor, as the epochs do."""
    if not 0 < first_share <= 1:
        raise ValueError(f"search.data_fidelity: {first_share!r} not accepted; accepted: a number in (0, 1]")
    levels = rung_levels(grace_period, reduction_factor, epochs)
    if first_share == 1 or not levels:
        return ()
    k = len(levels)
    return tuple((int(level), first_share ** ((k - i) / k)) for i, level in enumerate(levels))


def search_schedule(search: SearchSettings, epochs: int) -> tuple[tuple[int, float], ...]:
    """The data schedule of a search's candidates: ``data_schedule`` of its settings under a scheduler, else none."""
    if search.scheduler == "none":
        return ()
    return data_schedule(search.data_fidelity, search.grace_period, search.reduction_factor, epochs)


def check_budget(grace_period: float, reduction_factor: float, max_t: float) -> None:
    if not grace_period > 0:
        raise ValueError(f"grace_period: {grace_period!r} not accepted; must be > 0")
    if not reduction_factor > 1:
        raise ValueError(f"reduction_factor: {reduction_factor!r} not accepted; must be > 1")
    if not max_t >= grace_period:
        raise ValueError(f"max_t: {max_t!r} not accepted; must be >= grace_period ({grace_period!r})")
    if math.isinf(max_t):
        raise ValueError(f"max_t: {max_t!r} not accepted; must be finite")
