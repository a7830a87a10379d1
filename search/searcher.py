"""Ray's OptunaSearch, told the truth about trials that did not finish their budget.

Stock ``OptunaSearch`` hands a trial stopped early by a scheduler to Optuna as COMPLETE with its last,
low-fidelity values, so the sampler learns from partial results as if they were final. Here a trial whose last
result lacks ``budget_done`` is told as PRUNED (no values), and an errored one as FAIL.
"""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

BUDGET_DONE = "budget_done"


class BudgetAwareOptunaSearch(OptunaSearch):
    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        if error or not result:
            self._ot_study.tell(ot_trial, None, state=TrialState.FAIL)
        elif not result.get(BUDGET_DONE):
            self._ot_study.tell(ot_trial, None, state=TrialState.PRUNED)
        else:
            self._ot_study.tell(ot_trial, [result[m] for m in self.metric], state=TrialState.COMPLETE)
        self._completed_trials.add(trial_id)
