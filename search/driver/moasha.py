"""MO-ASHA as a Ray Tune scheduler: ``MultiObjectiveHalving`` (``search.driver.halving``, where the promotion rule
is written out) behind Tune's ``TrialScheduler`` interface."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ray.tune.result import DONE
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.driver.halving import SIZE_SLACK, STOP, MultiObjectiveHalving, as_list, check_objectives
from search.spec.results import EPOCH, TRAINING_COMPUTE

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial


class MOASHAScheduler(FIFOScheduler):
    """Ray Tune scheduler: multi-objective asynchronous successive halving (``MultiObjectiveHalving``).

    Unlike Tune's own schedulers it takes lists of metrics and modes, so leave ``metric``/``mode`` out of
    ``TuneConfig`` (which would also make the search single-objective). Its ``metric`` property stays None, so
    Tune's own check for reported metrics, which handles only one name, skips it; this scheduler checks every
    result itself and names what is missing.

    Args:
        metrics: result keys of the objectives.
        modes: ``"max"`` or ``"min"`` per metric.
        time_attr: result key of the resource (monotonic), epochs by default.
        cost_attr: result key of what the trial has cost so far, read by rule ``"hv-cost"`` (training FLOPs).
        max_t, grace_period, reduction_factor, log, rule, ranked, size_slack, reference: as for
            ``MultiObjectiveHalving``.
    """

    def __init__(
        self,
        metrics: Sequence[str],
        modes: Sequence[str],
        *,
        time_attr: str = EPOCH,
        cost_attr: str = TRAINING_COMPUTE,
        max_t: float,
        grace_period: float = 1,
        reduction_factor: float = 3,
        log: Sequence[bool] | None = None,
        rule: str = "pareto",
        ranked: int = 0,
        size_slack: float = SIZE_SLACK,
        reference: Sequence[float] | None = None,
    ) -> None:
        metrics, modes = check_objectives(metrics, modes)
        super().__init__()
        self._metrics = tuple(metrics)
        self._time_attr, self._cost_attr = time_attr, cost_attr
        self._halving = MultiObjectiveHalving(
            modes, max_t=max_t, grace_period=grace_period, reduction_factor=reduction_factor, log=log, rule=rule,
            ranked=ranked, size_slack=size_slack, reference=reference,
        )

    @property
    def metrics(self) -> tuple[str, ...]:
        return self._metrics

    @property
    def modes(self) -> tuple[str, ...]:
        return self._halving.modes

    @property
    def halving(self) -> MultiObjectiveHalving:
        """The decision logic, e.g. for ``halving.stopped_early``."""
        return self._halving

    def set_search_properties(self, metric: str | list[str] | None, mode: str | list[str] | None, **spec) -> bool:
        """Tune passes ``TuneConfig``'s metric/mode here. None, or exactly this scheduler's objectives: accepted.
        Anything else: False, and Tune raises its error about a scheduler that has its own metric and mode."""
        if metric is None and mode is None:
            return True
        metric_ok = metric is None or list(as_list(metric)) == list(self._metrics)
        mode_ok = mode is None or list(as_list(mode)) == list(self.modes)
        return metric_ok and mode_ok

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        read = self._read(trial, result)
        if read is None:
            return TrialScheduler.CONTINUE
        decision = self._halving.on_result(str(trial.trial_id), *read)
        return TrialScheduler.STOP if decision == STOP else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict) -> None:
        # A stopper-ended trial's last result reaches only this hook; raising here would turn it into an error
        if all(k in result for k in self._keys()):
            self._halving.record(str(trial.trial_id), *self._read(trial, result))

    def _keys(self) -> tuple[str, ...]:
        return (self._time_attr, *self._metrics, *([self._cost_attr] if self._halving.needs_cost else []))

    def _read(self, trial: Trial, result: dict) -> tuple[float, list[float], float | None] | None:
        """(resource, values, cost) from a result - cost only when the rule reads it; None for the bare "done"
        result of a trial that never reported."""
        keys = self._keys()
        missing = [k for k in keys if k not in result]
        if not missing:
            cost = result[self._cost_attr] if self._halving.needs_cost else None
            return result[self._time_attr], [result[m] for m in self._metrics], cost
        if len(missing) == len(keys) and result.get(DONE):
            return None
        raise ValueError(
            f"MOASHAScheduler: trial {trial.trial_id} reported a result without {', '.join(map(repr, missing))} "
            f"(metrics {list(self._metrics)}, time_attr {self._time_attr!r}"
            f"{f', cost_attr {self._cost_attr!r}' if self._halving.needs_cost else ''}); keys present: {sorted(result)}"
        )

    def debug_string(self) -> str:
        return f"Using MO-ASHA ({self._halving.rule}) over {list(self._metrics)}: {self._halving.debug_string()}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
