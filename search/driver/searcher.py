"""Ray's OptunaSearch, told the truth about each trial's outcome.

Stock ``OptunaSearch`` hands a trial stopped early by a scheduler to Optuna as COMPLETE with its last,
low-fidelity values, so the sampler learns from partial results as if they were final. Here:

- a trial whose last result has ``budget_done`` is COMPLETE with its values;
- a trial stopped early by a scheduler (no ``budget_done``) is COMPLETE with its last, low-fidelity values and the
  user attribute ``stopped_at_epoch``. Its trained objective is a pessimistic stand-in for the final one (accuracy
  still rising when it stopped), which is the scheduler's own verdict - weaker than the trials it was ranked
  against - passed on to the sampler. Told PRUNED instead, it was lost to the samplers: NSGA-II forms generations
  from COMPLETE trials only, so under MO-ASHA it never left its random first generation, and multi-objective TPE
  puts value-less pruned trials in its "bad" group without knowing what they cost. The front never reads the
  study (only ``budget_done`` trials can be on it), so these values stay in the samplers;
- an infeasible trial (over a spec constraint; never trained) is COMPLETE with its measured costs, its training
  objectives at the spec's reference point (the worst value the spec accepts), and its constraint violations,
  so the constrained samplers learn to avoid that region;
- an errored trial is FAIL, and so is one stopped by ``search.max_trial_seconds`` (its last result has
  ``timed_out``).

Every told trial carries its constraint values (``Trial.set_constraint``, <= 0 feasible, Optuna 5's way) when the
spec has constraints. ``history`` adds finished trials of an earlier search, so an extended search keeps learning
from them.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.spec.results import BUDGET_DONE, EPOCH, INFEASIBLE, TIMED_OUT

STOPPED_AT = "stopped_at_epoch"  # user attribute of a trial a scheduler stopped early: its values' fidelity


class BudgetAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args, limits: dict[str, float] | None = None,
                 history: list[optuna.trial.FrozenTrial] | None = None, **kwargs):
        self._limits = dict(limits or {})
        self._history = list(history or [])
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode):
        super()._setup_study(mode)
        if self._history:
            self._ot_study.add_trials(self._history)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        timed_out = bool(result and result.get(TIMED_OUT))
        if result and self._limits and not timed_out and all(k in result for k in self._limits):
            for key, value in zip(self._limits, constraint_violations(result, self._limits)):
                ot_trial.set_constraint(key, value)
        if error or not result or timed_out:
            self._ot_study.tell(ot_trial, None, state=TrialState.FAIL)
        elif result.get(BUDGET_DONE) or result.get(INFEASIBLE):
            self._ot_study.tell(ot_trial, [result[m] for m in self.metric], state=TrialState.COMPLETE)
        elif all(m in result for m in self.metric):  # stopped early: its rung values inform the sampler
            ot_trial.set_user_attr(STOPPED_AT, result.get(EPOCH))
            self._ot_study.tell(ot_trial, [result[m] for m in self.metric], state=TrialState.COMPLETE)
        else:  # ended before its first result: nothing to learn from
            self._ot_study.tell(ot_trial, None, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)


def constraint_violations(measured: dict[str, Any], limits: dict[str, float]) -> list[float]:
    """One value per limit, relative to it: (measured - limit) / limit, so <= 0 is feasible and the scale of
    parameters and milliseconds compare."""
    return [(float(measured[k]) - limit) / limit for k, limit in limits.items()]
