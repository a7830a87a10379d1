"""Early stopping for the search: asynchronous successive halving, one or several objectives.

``MultiObjectiveHalving`` is the decision logic of MO-ASHA (Schmucker et al. 2021, "Multi-objective
multi-fidelity hyperparameter optimization with application to fairness"; Syne Tune's ``MOASHA``), plain Python
that a test drives with fake trials. ``search.driver.moasha.MOASHAScheduler`` adapts it to Ray Tune's ``TrialScheduler``
interface; ``search.driver.schedulers`` names the schedulers a spec picks from.

Promotion rule (the exact one; ``eta`` is ``reduction_factor``):

1. Rungs lie at ``grace_period * eta**k`` for k = 0, 1, ... while the level is below ``max_t``.
2. A result from a trial this scheduler already stopped: "stop" again, nothing recorded.
3. A result at ``resource >= max_t``: "stop" - the trial has its full budget; nothing is promoted past ``max_t``
   (such a trial does not count as stopped early).
4. Otherwise take the highest rung at or below ``resource``. None (``resource < grace_period``), or the trial is
   already recorded there: "continue". A rung the trial's reports jumped over stays skipped, never back-filled.
5. Record the trial's objective vector at that rung, turned into "minimize" by ``search.front.pareto.to_minimize``;
   a vector with a NaN becomes +inf in every objective (a diverged trial is worse than any finite one). Records
   are never removed or replaced: n = the trials recorded at the rung so far, this one included.
6. Order the n vectors by non-dominated rank (0 = the front), then within one rank by crowding distance computed
   over that rank's members alone, larger first. The trial's position p = the number of recorded trials strictly
   ahead of it (a lower rank, or the same rank and a strictly larger crowding distance); ties share the better
   position.
7. "continue" if ``p * eta < n`` - the trial is among the top ``ceil(n / eta)`` - else "stop". Asynchronous
   halving decides once, when the trial reaches the rung; a later arrival never revokes an earlier decision.

While fewer than eta trials have reached a rung, ``ceil(n / eta) = 1``: a trial continues only if no earlier trial
at that rung is ahead of it. The first trial at a rung always continues; a later one continues if nothing recorded
dominates it and, within its front, none has a larger crowding distance (with one or two points in a front every
crowding distance is inf, so they tie). This is Syne Tune's convention (continue iff ``p / n <= 1 / eta``, which
agrees for n < eta) and ASHA's (the first trial at a rung continues; a later one only if it beats the cutoff of those
before it). For n >= eta it is stricter than Syne Tune's by one when eta divides n: exactly ``n / eta`` pass.

``mo-asha-strata`` changes step 6 only, because at low rungs the rule above is decided by the size objectives:
they are exact from the first epoch while accuracy is not, so the smallest model is always on the rung's front
(rank 0, infinite crowding distance) whatever its accuracy. Instead, one objective is *ranked* (the trained one,
``val_accuracy``: the first objective that is not measured before training) and the others are *size*:

6'. The trial's stratum = the recorded trials whose every size objective is at most ``size_slack`` times its own
   (in the minimized space: <= its value + log10(size_slack) on a log objective, <= value + (size_slack - 1) *
   abs(value) otherwise), itself included; n = the stratum's size. p = the number of trials in the stratum with a
   strictly better ranked objective. Continue if ``p * eta < n``.

So a model goes on only if its accuracy is among the top 1/eta of the models no more than ``size_slack`` times its
size: a small model competes with small ones, a large one must beat the smaller models too (it has to earn its
size). A NaN result (all +inf) is in no finite trial's stratum and has every finite trial ahead of it.

``mo-asha-hv`` changes step 6 only, to what the search itself is judged by: the hypervolume against the spec's
reference point (the MO-ASHA paper's hypervolume-contribution variant of the NSGA-II order). Crowding distance is
infinite at each objective's extremes, and every distance is infinite in a rank of one or two points, so under step
6 the extremes - the smallest model, whatever its accuracy - tie for first and always go on:

6''. Order the n vectors by non-dominated rank, then within one rank by the hypervolume that rank's members would
   lose without the trial (its exclusive contribution; ``search.front.pareto.hypervolume`` against the reference point,
   minimized as the objectives are), larger first. p = the number of recorded trials strictly ahead of it (a lower
   rank, or the same rank and a contribution larger by more than 1e-12); ties share the better position. A trial
   not strictly inside the reference point in every objective contributes nothing.

The smallest model then goes on for what it adds: its own accuracy times the size gap to the next smaller-or-better
model, not for being smallest.

``mo-asha-hv-cost`` weighs that contribution by what the trial has cost, as cost-aware Bayesian optimisation weighs
expected improvement per unit cost (Snoek et al. 2012, "EI per second"): under a compute budget, a candidate that
trains ten times slower must add ten times the hypervolume to go on. Costs differ by two orders of magnitude within
one space (a deep model on short patches of long series against a shallow one), and under rule 6'' the most
accurate candidate at a rung goes on whatever it costs - on a large set one such trial spent half a search's budget
and never finished (bench/results/search_quality.md):

6'''. As 6'', with the score within a rank = exclusive contribution / (the trial's cost / the mean cost of the
   trials recorded at the rung). Cost: the trial's ``training_compute`` when it reached the rung (training FLOPs so
   far, every fold) - at one rung every trial has trained the same epochs on the same data schedule, so costs differ
   by what the candidates cost. Non-dominated rank still comes first: a point on the rung's front is never behind a
   dominated one, however cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from search.front.pareto import crowding_distance, hypervolume, non_dominated_rank, to_minimize
from search.spec.fidelity import rung_levels
from search.spec.metrics import STATIC, canonical

Decision = Literal["continue", "stop"]
CONTINUE: Decision = "continue"
STOP: Decision = "stop"

RULES = ("pareto", "strata", "hv", "hv-cost")
SIZE_SLACK = 2.0  # a model's stratum: those at most twice its size (in every size objective)
MODES = ("max", "min")


def rung_positions(points: np.ndarray) -> np.ndarray:
    """(N, M) minimized objective vectors -> (N,) int position in the promotion order, 0 = best.

    Order: non-dominated rank first, then crowding distance within the rank (larger first). A point's position is
    the number of points strictly ahead of it, so tied points share a position.
    """
    return _rank_then(points, lambda members, _: crowding_distance(members))


def _rank_then(points: np.ndarray, score: Callable[[np.ndarray, np.ndarray], np.ndarray], tol: float = 0.0
               ) -> np.ndarray:
    """Positions by non-dominated rank, then by ``score(members, mask)`` (one rank's points, and the mask that picks
    them out of ``points``; larger first): a point's position is the number of points strictly ahead of it - a lower
    rank, or the same rank and a score larger by more than ``tol`` - so tied points share a position."""
    points = np.asarray(points, dtype=float)
    rank = non_dominated_rank(points)
    scores = np.zeros(len(points))
    for r in np.unique(rank):
        members = rank == r
        scores[members] = score(points[members], members)
    # inf - inf inside crowding_distance (points with infinite objectives) gives NaN; count it as no spacing
    scores = np.nan_to_num(scores, nan=0.0, posinf=np.inf)
    ahead = (rank[None, :] < rank[:, None]) | ((rank[None, :] == rank[:, None])
                                               & (scores[None, :] > scores[:, None] + tol))
    return ahead.sum(axis=1)


def strata_positions(points: np.ndarray, ranked: int, log: Sequence[bool], size_slack: float = SIZE_SLACK
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(N, M) minimized vectors -> ((N,) position within its stratum, (N,) stratum size), rule 6' above.

    Args:
        ranked: column of the trained objective; the other columns are size objectives.
        log: per column, whether it is on log10 scale (the slack is then added as log10(size_slack)).
    """
    points = np.asarray(points, dtype=float)
    size = [k for k in range(points.shape[1]) if k != ranked]
    own = points[:, size]  # (N, S)
    tol = np.array([math.log10(size_slack) if log[k] else np.nan for k in size])
    tol = np.where(np.isnan(tol), (size_slack - 1) * np.abs(own), tol)  # (N, S): relative on a linear scale
    # within[i, j]: j is in i's stratum - no size objective of j above i's own by more than the slack
    within = np.all(own[None, :, :] <= own[:, None, :] + tol[:, None, :], axis=2) if size else \
        np.ones((len(points), len(points)), dtype=bool)
    np.fill_diagonal(within, True)  # an all-inf point (inf <= inf + tol holds anyway) counts itself too
    better = points[None, :, ranked] < points[:, None, ranked]  # better[i, j]: j ranks strictly ahead of i
    return (within & better).sum(axis=1), within.sum(axis=1)


def contribution_positions(points: np.ndarray, reference: np.ndarray, costs: np.ndarray | None = None
                           ) -> np.ndarray:
    """(N, M) minimized vectors -> (N,) position in the promotion order of rule 6'' (module docstring), 0 = best;
    with ``costs`` ((N,) what each trial has cost so far), rule 6''': contribution per unit of relative cost.

    Args:
        reference: (M,) the hypervolume reference point, minimized as the points are.
    """
    # costs relative to the rung's mean keep the scores on the contributions' scale (and the tie tolerance its
    # meaning); a trial that cost nothing (never trained) is charged one FLOP - it contributes nothing anyway
    weight = None if costs is None else \
        np.maximum(np.asarray(costs, dtype=float), 1.0) / max(float(np.mean(costs)), 1.0)

    def exclusive(members: np.ndarray, mask: np.ndarray) -> np.ndarray:  # what the rank loses without each member
        whole = hypervolume(members, reference)
        lost = np.array([whole - hypervolume(np.delete(members, i, axis=0), reference) for i in range(len(members))])
        return lost if weight is None else lost / weight[mask]

    return _rank_then(points, exclusive, tol=1e-12)


class MultiObjectiveHalving:
    """MO-ASHA's decisions, with no Ray: feed every result, get "continue" or "stop" (rule in the module docstring).

    Args:
        modes: ``"max"`` or ``"min"`` per objective, in the order of the values passed to ``on_result``.
        max_t: full budget, in the unit of ``resource`` (epochs); a trial reaching it is stopped as done.
        grace_period: first rung; no trial is stopped before it.
        reduction_factor: eta; about 1/eta of the trials at a rung go on to the next.
        log: per objective, rank on log10 scale (changes crowding distances, not dominance).
        rule: ``"pareto"`` (rank, then crowding distance: step 6), ``"strata"`` (the ranked objective within
            size strata: step 6'), ``"hv"`` (rank, then hypervolume contribution: step 6'') or ``"hv-cost"``
            (contribution per unit of cost: step 6'''; every result then comes with the trial's cost).
        ranked: for ``"strata"``, the index of the trained objective; every other one is a size objective.
        size_slack: for ``"strata"``, how much larger (a factor) a model in a trial's stratum may be.
        reference: for ``"hv"`` and ``"hv-cost"``, the hypervolume reference point, one value per objective in
            its own units (the spec's ``objectives[].reference``).
    """

    def __init__(
        self,
        modes: Sequence[str],
        *,
        max_t: float,
        grace_period: float = 1,
        reduction_factor: float = 3,
        log: Sequence[bool] | None = None,
        rule: str = "pareto",
        ranked: int = 0,
        size_slack: float = SIZE_SLACK,
        reference: Sequence[float] | None = None,
    ) -> None:
        self.modes = tuple(check_modes(modes))
        if rule not in RULES:
            raise ValueError(f"rule: {rule!r} not accepted; accepted: {list(RULES)}")
        if not 0 <= ranked < len(self.modes):
            raise ValueError(f"ranked: {ranked!r} not accepted; accepted: an objective index, 0..{len(self.modes) - 1}")
        if not size_slack >= 1:
            raise ValueError(f"size_slack: {size_slack!r} not accepted; must be >= 1 (a factor)")
        self.rule, self.ranked, self.size_slack = rule, ranked, size_slack
        self.log = tuple(bool(x) for x in log) if log is not None else (False,) * len(self.modes)
        if len(self.log) != len(self.modes):
            raise ValueError(f"log: {list(log)!r} has {len(self.log)} entries; need one per objective ({len(modes)})")
        self.reference = None
        if rule in ("hv", "hv-cost"):
            if reference is None or len(reference) != len(self.modes):
                raise ValueError(f"reference: {reference!r} not accepted; rule {rule!r} needs one reference value per "
                                 f"objective ({len(self.modes)})")
            self.reference = to_minimize(np.asarray(reference, dtype=float)[None, :], self.modes, self.log)[0]
        self.max_t = max_t
        self.grace_period = grace_period
        self.reduction_factor = reduction_factor
        self.rungs = rung_levels(grace_period, reduction_factor, max_t)
        self._recorded: dict[float, dict[str, np.ndarray]] = {level: {} for level in self.rungs}
        self._costs: dict[float, dict[str, float]] = {level: {} for level in self.rungs}  # rule "hv-cost" only
        self._stopped: set[str] = set()

    @property
    def stopped_early(self) -> frozenset[str]:
        """Trials this scheduler stopped before ``max_t``: their last values are low-fidelity."""
        return frozenset(self._stopped)

    def recorded(self, level: float) -> dict[str, np.ndarray]:
        """Minimized objective vectors recorded at one rung, by trial id, in arrival order (a copy)."""
        return dict(self._recorded[level])

    @property
    def needs_cost(self) -> bool:
        """Whether every result must come with the trial's cost so far (rule ``"hv-cost"``)."""
        return self.rule == "hv-cost"

    def on_result(self, trial_id: str, resource: float, values: Sequence[float], cost: float | None = None
                  ) -> Decision:
        """One result of one trial -> whether it should keep training. ``cost``: what the trial has cost so far
        (e.g. training FLOPs), read by rule ``"hv-cost"`` only."""
        if trial_id in self._stopped:
            return STOP
        if resource >= self.max_t:
            return STOP
        level = self._new_rung(trial_id, resource)
        if level is None:
            return CONTINUE
        self._record(level, trial_id, values, cost)
        recorded = self._recorded[level]
        points, me = np.stack(list(recorded.values())), list(recorded).index(trial_id)
        if self.rule == "strata":
            positions, sizes = strata_positions(points, self.ranked, self.log, self.size_slack)
            position, n = positions[me], sizes[me]
        elif self.rule in ("hv", "hv-cost"):
            costs = np.array([self._costs[level][t] for t in recorded]) if self.needs_cost else None
            position, n = contribution_positions(points, self.reference, costs)[me], len(recorded)
        else:
            position, n = rung_positions(points)[me], len(recorded)
        if position * self.reduction_factor < n:
            return CONTINUE
        self._stopped.add(trial_id)
        return STOP

    def record(self, trial_id: str, resource: float, values: Sequence[float], cost: float | None = None) -> None:
        """Record a result without deciding, for a trial that ended on its own (e.g. a stopper ended it, so the
        scheduler never saw this result). It then counts for later arrivals at its rung."""
        level = None if resource >= self.max_t else self._new_rung(trial_id, resource)
        if level is not None:
            self._record(level, trial_id, values, cost)

    def _record(self, level: float, trial_id: str, values: Sequence[float], cost: float | None) -> None:
        """The trial's point (and, for rule "hv-cost", its cost) at a rung - both checked before either is kept, so
        a refused result leaves the rung as it was."""
        point = self._point(values)
        if self.needs_cost:
            if cost is None or not cost >= 0:  # NaN fails too
                raise ValueError(f"cost: {cost!r} not accepted for trial {trial_id}; rule 'hv-cost' needs each "
                                 "result's cost so far, a number >= 0")
            self._costs[level][trial_id] = float(cost)
        self._recorded[level][trial_id] = point

    def _new_rung(self, trial_id: str, resource: float) -> float | None:
        """The highest rung at or below ``resource``, if the trial is not recorded there yet."""
        reached = [level for level in self.rungs if level <= resource]
        if not reached or trial_id in self._recorded[reached[-1]]:
            return None
        return reached[-1]

    def _point(self, values: Sequence[float]) -> np.ndarray:
        if len(values) != len(self.modes):
            raise ValueError(
                f"values: {list(values)!r} has {len(values)} entries; need one per objective ({len(self.modes)})"
            )
        point = to_minimize(np.asarray(values, dtype=float)[None, :], self.modes, self.log)[0]
        return np.full_like(point, np.inf) if np.isnan(point).any() else point

    def debug_string(self) -> str:
        rungs = " | ".join(f"{level}: {len(self._recorded[level])} recorded" for level in self.rungs)
        return f"stopped early: {len(self._stopped)}; rungs {rungs or '(none)'}"


def trained_objective(metrics: Sequence[str]) -> int:
    """Index of the first objective that training changes (not measured once before it, as sizes are)."""
    trained = [i for i, m in enumerate(metrics) if canonical(m) not in STATIC]
    if not trained:
        raise ValueError(f"search.scheduler: 'mo-asha-strata' needs an objective that training changes (e.g. "
                         f"val_accuracy); objectives {list(metrics)} are all measured before training")
    return trained[0]


def as_list(x: str | Sequence[str]) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def check_modes(modes: Sequence[str]) -> list[str]:
    modes = as_list(modes)
    if not modes:
        raise ValueError("modes: empty; need one of ['max', 'min'] per objective")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"modes: {bad!r} not accepted; accepted: {list(MODES)}")
    return modes


def check_objectives(metrics: Sequence[str], modes: Sequence[str]) -> tuple[list[str], list[str]]:
    metrics, modes = as_list(metrics), check_modes(modes)
    if len(metrics) != len(modes):
        raise ValueError(f"metrics: {metrics!r} and modes: {modes!r} differ in length; need one mode per metric")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics: {metrics!r} repeats a name")
    return metrics, modes
