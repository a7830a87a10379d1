"""The schedulers a spec picks from (``search.scheduler``): a registry of names, each a factory of a Ray Tune
scheduler (or None: every trial runs to the end).

Tune is imported when a scheduler is built, not when this module is: a spec's scheduler name is checked against
``SCHEDULERS`` before any compute, without Ray (``search.driver.checks``). The rule MO-ASHA promotes by is in
``search.driver.halving``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from emule_models.registry import Registry
from search.driver.halving import check_objectives, trained_objective
from search.spec.fidelity import check_budget
from search.spec.results import EPOCH

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler


# a scheduler: (metrics, modes, log, max_t, grace_period, reduction_factor, time_attr, reference) -> a Tune scheduler
# or None
SCHEDULERS: Registry[Callable[..., TrialScheduler | None]] = Registry("scheduler", field="search.scheduler",
                                                                     sort=False)


@SCHEDULERS.register("none")
def _fifo(metrics: list[str], modes: list[str], log: Sequence[bool] | None, max_t: int, grace_period: int,
          reduction_factor: int, time_attr: str, reference: Sequence[float] | None) -> None:
    return None  # Tune runs every trial to the end, first in first out


@SCHEDULERS.register("asha")
def _asha(metrics: list[str], modes: list[str], log: Sequence[bool] | None, max_t: int, grace_period: int,
          reduction_factor: int, time_attr: str, reference: Sequence[float] | None) -> TrialScheduler:
    check_budget(grace_period, reduction_factor, max_t)
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr=time_attr,
        metric=metrics[0],
        mode=modes[0],
        max_t=max_t,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
    )


@SCHEDULERS.register("mo-asha")
def _mo_asha(metrics: list[str], modes: list[str], log: Sequence[bool] | None, max_t: int, grace_period: int,
             reduction_factor: int, time_attr: str, reference: Sequence[float] | None,
             rule: str = "pareto") -> TrialScheduler:
    check_budget(grace_period, reduction_factor, max_t)
    from search.driver.moasha import MOASHAScheduler

    return MOASHAScheduler(
        metrics,
        modes,
        time_attr=time_attr,
        max_t=max_t,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        log=log,
        rule=rule,
        ranked=trained_objective(metrics) if rule == "strata" else 0,
        reference=reference,
    )


@SCHEDULERS.register("mo-asha-strata")
def _mo_asha_strata(*args) -> TrialScheduler:
    return _mo_asha(*args, rule="strata")


@SCHEDULERS.register("mo-asha-hv")
def _mo_asha_hv(*args) -> TrialScheduler:
    return _mo_asha(*args, rule="hv")


@SCHEDULERS.register("mo-asha-hv-cost")
def _mo_asha_hv_cost(*args) -> TrialScheduler:
    return _mo_asha(*args, rule="hv-cost")


def build_scheduler(
    name: str,
    metrics: Sequence[str],
    modes: Sequence[str],
    log: Sequence[bool] | None,
    max_t: int,
    grace_period: int,
    reduction_factor: int,
    time_attr: str = EPOCH,
    reference: Sequence[float] | None = None,
) -> TrialScheduler | None:
    """The spec's ``search.scheduler`` -> a Tune scheduler.

    ``"none"``: None (Tune runs every trial to the end, FIFO). ``"asha"``: Tune's ASHA on the first objective alone
    (its metric and mode set on the scheduler, never in ``TuneConfig``; ``log`` is not used). ``"mo-asha"``:
    ``MOASHAScheduler`` over all objectives. ``"mo-asha-strata"``: the same with rule 6' (module docstring), ranking
    the first objective not measured before training (``search.spec.metrics.STATIC``) within size strata.
    ``"mo-asha-hv"``: the same with rule 6'', ranking by hypervolume contribution against ``reference`` (the spec's
    reference point, one value per objective in its own units). ``"mo-asha-hv-cost"``: rule 6''', that contribution
    per unit of the trial's training FLOPs so far (``training_compute``, which every result must carry).
    """
    make = SCHEDULERS.lookup(name)
    metrics, modes = check_objectives(metrics, modes)
    return make(metrics, modes, log, max_t, grace_period, reduction_factor, time_attr, reference)


