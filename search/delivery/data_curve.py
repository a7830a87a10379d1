"""How much data does a candidate need: its learning curve, measured and extrapolated (`emule data-curve`).

The chosen candidate is trained again, with its own recipe and the search's folds, on nested stratified fractions
of each fold's training rows (per class the first rows of one seeded shuffle, so a larger fraction holds a smaller
one and every class keeps its share; tiny data keeps ``search.trial.validation.class_floor`` rows of a class), for
``seeds`` shuffles; each model is scored on its fold's validation rows, never on the test split. Measured: the mean
accuracy at each fraction (and its spread over folds and seeds), and the smallest fraction within 1 point of all
the rows.

Extrapolated: an inverse power law fit to the means by rows learned from (the learning-curve form of Figueroa et
al. 2012 and Hestness et al. 2017), each mean weighted by its standard error over the (fold, seed) runs (weighted
least squares, as Figueroa et al. fit theirs): the error falling as a power law, ``accuracy(n) = 1 - b * n**-c``,
or with a ceiling below perfect, ``a - b * n**-c``, whichever the small-sample Akaike criterion (AICc) prefers - a
ceiling is fit only where enough points show one. Intervals come from a bootstrap over the (fold, seed) runs. It
predicts the accuracy with 2x and 4x the labelled rows and the rows that +1 and +3 points would take; a predicted
gain at 4x under ``FLAT_GAIN`` is called flat - more labels will not pay. Extrapolating from half the rows, this
was off by 1.96 points on average on the five bundled sets, a plain unweighted power law by 2.9
(``bench/results/data_curve.md``); Mahmood et al. (CVPR 2022) show such estimates are best refined over several
rounds of labelling.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from emule_models.cost import training_flops
from emule_models.data import Dataset
from emule_models.train import evaluate, fit
from search.record.tracking import Tracker
from search.spec.results import TRAINING_COMPUTE
from search.spec.schema import CURVE_FRACTIONS, CURVE_SEEDS, Spec, check_curve
from search.trial.candidate import Candidate, refuse_distilled
from search.trial.validation import class_floor, selection_folds, start_model

FRACTIONS, SEEDS = CURVE_FRACTIONS, CURVE_SEEDS  # `emule data-curve`'s defaults, as the spec's data_curve
WITHIN = 0.01  # "as good as all the rows": within 1 point
FLAT_GAIN = 0.005  # a predicted gain at 4x the rows under half a point: the curve is flat
GAINS = (0.01, 0.03)  # the rows +1 and +3 points would take
BOOTSTRAP = 300
INTERVAL = (5, 95)  # percentiles of the bootstrap: a 90% interval


def check_arguments(fractions: Sequence[float], seeds: int) -> tuple[float, ...]:
    """The fractions to measure, sorted, with 1.0 added; refused in one line (naming the option) before any
    compute."""
    return check_curve(fractions, seeds, prefix="--")


def nested_rows(labels: np.ndarray, fractions: Sequence[float], seed: int, floor: int = 1) -> list[np.ndarray]:
    """Positions into ``labels`` for each fraction: per class the first ``max(floor, round(f * size))`` rows (at
    most the class) of one seeded shuffle, so each fraction's rows contain the smaller fractions' rows."""
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    return [np.sort(np.concatenate([r[:min(len(r), max(1, floor, round(f * len(r))))] for r in by_class]))
            for f in fractions]


@dataclass(frozen=True)
class Workload:
    """What a curve costs before it runs: the models trained and the samples they see."""

    trainings: int
    samples: int
    flops: float

    def line(self, cand: Candidate, folds: int, fractions: Sequence[float], seeds: int) -> str:
        return (f"data curve: {self.trainings} trainings ({folds} fold(s) x {len(fractions)} fractions x {seeds} "
                f"seed(s)) of {cand.training.epochs} epochs, {self.samples:,} training samples, {self.flops:.3g} "
                "training FLOPs (3 x forward per sample)")


def workload(cand: Candidate, dataset: Dataset, fractions: Sequence[float], seeds: int) -> Workload:
    labels, folds = dataset.pool.labels, selection_folds(cand.data_section, dataset)
    floor = class_floor(labels)
    rows = sum(len(r) for fit_rows, _ in folds for r in nested_rows(labels[fit_rows], fractions, 0, floor))
    samples = seeds * rows * cand.training.epochs
    return Workload(len(folds) * len(fractions) * seeds, samples, training_flops(cand.model, samples))


@dataclass(frozen=True)
class Run:
    """One model of the curve: a fold, a shuffle seed, a fraction; the rows it learned from and its accuracy."""

    fold: int
    seed: int
    fraction: float
    rows: int
    accuracy: float


def measure(cand: Candidate, dataset: Dataset, fractions: Sequence[float], seeds: int, device: str = "cpu",
            log: Callable[[str], None] = print) -> list[Run]:
    """Train the candidate on each fold's nested fractions, for each seed; score on the fold's validation rows."""
    refuse_distilled(cand)
    pool = dataset.pool
    folds = selection_folds(cand.data_section, dataset)
    floor, runs, total = class_floor(pool.labels), [], len(folds) * len(fractions) * seeds
    start = time.perf_counter()
    for seed in range(seeds):
        for k, (fit_rows, val_rows) in enumerate(folds):
            for fraction, chosen in zip(fractions, nested_rows(pool.labels[fit_rows], fractions, seed, floor)):
                rows = fit_rows[chosen]
                model, _ = start_model(cand, dataset, pool.take(fit_rows), device)
                fit(model, pool.take(rows), None, cand.training, device=device)
                accuracy = evaluate(model, pool.take(val_rows), device=device)["accuracy"]
                runs.append(Run(k, seed, fraction, len(rows), accuracy))
                done = len(runs)
                left = (time.perf_counter() - start) / done * (total - done)
                log(f"  {done}/{total}: seed {seed} fold {k} fraction {fraction:g} ({len(rows)} rows) accuracy "
                    f"{accuracy:.3f}; ~{left:.0f}s left")
    return runs


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(n, -c)


PERFECT = 1.0  # the error law's ceiling: with no ceiling seen, the error is taken to fall towards zero
SIGMA_FLOOR = 0.005  # a mean of identical scores is not exact: every standard error is at least half a point


def point_sigma(std: np.ndarray, models: np.ndarray) -> np.ndarray:
    """The standard error of each fraction's mean accuracy, floored: the weights of the fit."""
    return np.sqrt(np.asarray(std, float) ** 2 / np.asarray(models, float) + SIGMA_FLOOR ** 2)


def fit_power_law(rows: np.ndarray, accuracy: np.ndarray, sigma: np.ndarray | None = None,
                  ceiling: float | None = None) -> tuple[float, float, float] | None:
    """``(a, b, c)`` of ``a - b * n**-c`` through the points, weighted by ``sigma`` (a <= 1, b >= 0, c in (0, 3]);
    ``ceiling`` fixes ``a``. None when the fit fails."""
    from scipy.optimize import OptimizeWarning, curve_fit

    rows, accuracy = np.asarray(rows, float), np.asarray(accuracy, float)
    b0 = max(1e-3, (accuracy.max() - accuracy.min()) * rows.min() ** 0.5)
    if ceiling is None:
        law, start, bounds = power_law, (min(1.0, accuracy.max() + 0.02), b0, 0.5), ([0, 0, 1e-3], [1, np.inf, 3])
    else:
        law = lambda n, b, c: power_law(n, ceiling, b, c)  # noqa: E731
        start, bounds = (max(1e-3, ceiling - accuracy.min()), 0.5), ([0, 1e-3], [np.inf, 3])
    try:
        with warnings.catch_warnings():  # the covariance is not used (intervals come from the bootstrap)
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(law, rows, accuracy, p0=start, sigma=sigma, bounds=bounds, maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    params = tuple(float(p) for p in params)
    return params if ceiling is None else (float(ceiling), *params)


def aicc(rows: np.ndarray, accuracy: np.ndarray, sigma: np.ndarray, params: tuple[float, float, float],
         free: int) -> float:
    """The small-sample Akaike criterion of a fit with ``free`` parameters (known standard errors): infinite
    where the points cannot tell that many parameters apart."""
    points = len(rows)
    if points - free - 1 <= 0:
        return math.inf
    chi2 = float(np.sum(((accuracy - power_law(np.asarray(rows, float), *params)) / sigma) ** 2))
    return chi2 + 2 * free + 2 * free * (free + 1) / (points - free - 1)


def choose_law(rows: np.ndarray, accuracy: np.ndarray, sigma: np.ndarray
               ) -> tuple[float | None, tuple[float, float, float] | None]:
    """The ceiling to fit with and the fit: ``PERFECT`` (the error law, two parameters) unless a free ceiling
    (three) fits the points better by AICc, then None."""
    error_law = fit_power_law(rows, accuracy, sigma, PERFECT)
    free = fit_power_law(rows, accuracy, sigma)
    if free is None or (error_law is not None and aicc(rows, accuracy, sigma, error_law, 2)
                        <= aicc(rows, accuracy, sigma, free, 3)):
        return PERFECT, error_law
    return None, free


def rows_for(params: tuple[float, float, float], target: float) -> float | None:
    """The rows at which the curve reaches ``target``; None beyond its ceiling ``a``."""
    a, b, c = params
    if target >= a:
        return None
    return (b / (a - target)) ** (1 / c) if b > 0 else 0.0


@dataclass
class Curve:
    """A measured learning curve and what its fit says (see the module docstring)."""

    runs: list[Run]
    labelled: int  # the training pool's rows: what a user has labelled (the deployed model learns from all of them)
    fit: tuple[float, float, float] | None = None
    ceiling_seen: bool = False  # the fit has a ceiling below perfect (else the error law, ceiling 1)
    predicted: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # name -> (value, low, high)

    def table(self) -> list[dict[str, float]]:
        """Per fraction: rows learned from (mean over folds), accuracy mean and std over folds and seeds."""
        out = []
        for f in sorted({r.fraction for r in self.runs}):
            acc = np.array([r.accuracy for r in self.runs if r.fraction == f])
            rows = np.mean([r.rows for r in self.runs if r.fraction == f])
            out.append({"fraction": f, "rows": float(rows), "accuracy": float(acc.mean()),
                        "accuracy_std": float(acc.std()), "models": len(acc)})
        return out

    def enough(self) -> float:
        """The smallest fraction whose mean accuracy is within WITHIN of all the rows' (measured)."""
        table = self.table()
        full = table[-1]["accuracy"]
        return next(t["fraction"] for t in table if t["accuracy"] >= full - WITHIN)

    @property
    def flat(self) -> bool:
        return "gain_4x" in self.predicted and self.predicted["gain_4x"][0] < FLAT_GAIN

    def lines(self) -> list[str]:
        table = self.table()
        out = ["fraction  rows  accuracy (mean +- std over folds x seeds)"]
        out += [f"{t['fraction']:>8g}  {t['rows']:>4.0f}  {t['accuracy']:.3f} +- {t['accuracy_std']:.3f}"
                for t in table]
        enough = self.enough()
        out.append(f"smallest fraction within {WITHIN * 100:g} point of all the rows (measured): {enough:g} "
                   f"({next(t['rows'] for t in table if t['fraction'] == enough):.0f} of {table[-1]['rows']:.0f} "
                   "rows per fold)")
        if self.fit is None:
            out.append("no power law fits these points: nothing is extrapolated")
            return out
        a, b, c = self.fit
        law = ("a ceiling below perfect, seen in the points" if self.ceiling_seen else
               "error falling as a power law; no ceiling below perfect seen")
        out.append(f"fit: accuracy(n) = {a:.3f} - {b:.3g} x n^-{c:.3g} (n: labelled rows learned from; {law})")
        now = self.predicted["now"]
        out.append(f"with all {self.labelled} labelled rows (as the deployed model learns): {_ranged(now)}")
        for times in (2, 4):
            value = self.predicted[f"x{times}"]
            out.append(f"with {times}x the labelled rows ({times * self.labelled}): {_ranged(value)} predicted")
        if self.flat:
            gain = self.predicted["gain_4x"]
            out.append(f"flat: 4x the labels would add {gain[0] * 100:+.1f} points (90% interval "
                       f"{gain[1] * 100:+.1f} .. {gain[2] * 100:+.1f}); more labels will not pay")
        for gain in GAINS:
            key = f"rows_plus_{round(gain * 100)}"
            if key in self.predicted:
                need = self.predicted[key]
                out.append(f"+{gain * 100:g} point(s): about {need[0]:,.0f} labelled rows "
                           f"({need[0] / self.labelled:.1f}x; 90% interval {need[1]:,.0f} .. {need[2]:,.0f})")
            else:
                out.append(f"+{gain * 100:g} point(s): beyond the curve's ceiling ({a:.3f})")
        return out

    def summary(self) -> str:
        """One line: what the curve says (the parent run's description gets it)."""
        if self.fit is None:
            return f"measured to {self.table()[-1]['accuracy']:.3f}; within 1 point from {self.enough():g} of the rows"
        x2 = self.predicted["x2"]
        verdict = "flat: more labels will not pay" if self.flat else (
            f"2x the labels: {x2[0]:.3f} predicted ({x2[1]:.3f} .. {x2[2]:.3f})")
        return (f"{self.predicted['now'][0]:.3f} with {self.labelled} labelled rows; within 1 point from "
                f"{self.enough():g} of them (measured); {verdict}")

    def metrics(self) -> dict[str, float]:
        out = {"data_curve_enough_fraction": self.enough(), "data_curve_full_accuracy": self.table()[-1]["accuracy"]}
        if self.fit is not None:
            out["data_curve_ceiling"] = self.fit[0]  # 1.0: the error law; below: the ceiling the points showed
        for key, (value, low, high) in self.predicted.items():
            out.update({f"data_curve_{key}": value, f"data_curve_{key}_low": low, f"data_curve_{key}_high": high})
        return out


def _ranged(value: tuple[float, float, float]) -> str:
    return f"{value[0]:.3f} (90% interval {value[1]:.3f} .. {value[2]:.3f})"


def fit_curve(runs: list[Run], labelled: int, bootstrap: int = BOOTSTRAP, seed: int = 0) -> Curve:
    """Fit the power law (its ceiling chosen by ``choose_law``) to the fraction means, weighted by their standard
    errors, and bootstrap the (fold, seed) runs for intervals."""
    curve = Curve(runs, labelled)
    table = curve.table()
    rows = np.array([t["rows"] for t in table])
    sigma = point_sigma([t["accuracy_std"] for t in table], [t["models"] for t in table])
    fixed, curve.fit = choose_law(rows, np.array([t["accuracy"] for t in table]), sigma)
    curve.ceiling_seen = fixed is None
    if curve.fit is None:
        return curve
    units = sorted({(r.fold, r.seed) for r in runs})
    fractions = [t["fraction"] for t in table]
    by_unit = {u: [next(r.accuracy for r in runs if (r.fold, r.seed) == u and r.fraction == f) for f in fractions]
               for u in units}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        picked = [units[i] for i in rng.integers(len(units), size=len(units))]
        means = np.mean([by_unit[u] for u in picked], axis=0)
        params = fit_power_law(rows, means, sigma, fixed)
        if params is not None:
            draws.append(params)
    draws = draws or [curve.fit]

    def predicted(f: Callable[[tuple[float, float, float]], float | None]) -> tuple[float, float, float] | None:
        value = f(curve.fit)
        if value is None:
            return None
        values = [v for v in (f(p) for p in draws) if v is not None and math.isfinite(v)]
        low, high = np.percentile(values, INTERVAL) if values else (value, value)
        return float(value), float(low), float(high)

    at = lambda n: lambda p: float(power_law(np.array(n, float), *p))  # noqa: E731
    curve.predicted["now"] = predicted(at(labelled))
    for times in (2, 4):
        curve.predicted[f"x{times}"] = predicted(at(times * labelled))
    curve.predicted["gain_4x"] = predicted(lambda p: at(4 * labelled)(p) - at(labelled)(p))
    for gain in GAINS:
        need = predicted(lambda p, g=gain: rows_for(p, at(labelled)(p) + g))
        if need is not None:
            curve.predicted[f"rows_plus_{round(gain * 100)}"] = need
    return curve


def write_files(curve: Curve, out_dir: Path, title: str) -> list[Path]:
    """``data_curve.parquet`` / ``.csv`` (the table, and every model), ``data_curve.png`` and ``data_curve.html``."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(curve.table())
    pq.write_table(table, out_dir / "data_curve.parquet")
    pacsv.write_csv(table, out_dir / "data_curve.csv")
    pq.write_table(pa.Table.from_pylist([r.__dict__ for r in curve.runs]), out_dir / "data_curve_runs.parquet")
    _plot(curve, out_dir / "data_curve.png", title)
    _html(curve, out_dir / "data_curve.html", title)
    return [out_dir / n for n in ("data_curve.parquet", "data_curve.csv", "data_curve_runs.parquet",
                                  "data_curve.png", "data_curve.html")]


def _extrapolated(curve: Curve) -> tuple[np.ndarray, np.ndarray] | None:
    if curve.fit is None:
        return None
    n = np.geomspace(min(r.rows for r in curve.runs), 4 * curve.labelled, 60)
    return n, power_law(n, *curve.fit)


def _plot(curve: Curve, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = curve.table()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    ax.errorbar([t["rows"] for t in table], [t["accuracy"] for t in table], yerr=[t["accuracy_std"] for t in table],
                fmt="o", color="C0", capsize=3, label="measured (mean +- std, validation folds)")
    line = _extrapolated(curve)
    if line is not None:
        ax.plot(*line, color="C3", lw=1, ls="--", label="power-law fit, extrapolated")
        for times in (1, 2, 4):
            ax.axvline(times * curve.labelled, color="0.7", lw=0.8)
            ax.annotate(f"{times}x labelled" if times > 1 else "labelled now",
                        (times * curve.labelled, ax.get_ylim()[0]), rotation=90, fontsize=7, color="0.4",
                        va="bottom", ha="right")
    ax.set_xscale("log")
    ax.set_xlabel("labelled rows learned from")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _html(curve: Curve, path: Path, title: str) -> None:
    import plotly.graph_objects as go

    table = curve.table()
    fig = go.Figure(go.Scatter(
        x=[t["rows"] for t in table], y=[t["accuracy"] for t in table], mode="markers", name="measured",
        error_y={"type": "data", "array": [t["accuracy_std"] for t in table]},
        customdata=[[t["fraction"], t["models"]] for t in table],
        hovertemplate="fraction %{customdata[0]}<br>rows %{x:.0f}<br>accuracy %{y:.3f}<br>%{customdata[1]} models"
                      "<extra></extra>"))
    line = _extrapolated(curve)
    if line is not None:
        fig.add_trace(go.Scatter(x=line[0], y=line[1], mode="lines", name="power-law fit",
                                 line={"dash": "dash"}, hovertemplate="rows %{x:.0f}<br>%{y:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis={"type": "log", "title": "labelled rows learned from"},
                      yaxis={"title": "validation accuracy"}, template="plotly_white")
    path.write_text(fig.to_html(include_plotlyjs=True, full_html=True))


def run(tracker, name: str, select: str = "best", fractions: Sequence[float] = FRACTIONS, seeds: int = SEEDS,
        dry_run: bool = False, device: str = "cpu", log: Callable[[str], None] = print) -> Curve | None:
    """`emule data-curve`: the chosen candidate of search ``name`` (``best``, ``knee`` or a trial id), its cost
    printed first, then measured, fit, printed and logged as a child run of the search (its files, metrics and a
    line in the search's description). ``tracker``: a ``search.record.tracking.Tracker``. None with ``dry_run``."""
    import tempfile

    from search.delivery.export import pick_candidate
    from search.record.searches import load_search
    from search.trial.candidate import candidate_dataset, data_in_place

    fractions = check_arguments(fractions, seeds)
    record = load_search(tracker, name)
    chosen, cand = pick_candidate(tracker, record, select)
    data_in_place(cand.data_section, record.name, None, need="to train the candidate on fractions of it")
    dataset = candidate_dataset(cand)
    work = workload(cand, dataset, fractions, seeds)
    log(f"search {record.name}, trial {chosen.trial_id} (val_accuracy {chosen.metrics.get('val_accuracy', 0):.3f}):")
    log(work.line(cand, len(selection_folds(cand.data_section, dataset)), fractions, seeds))
    if dry_run:
        return None
    run_id = tracker.start_analysis(record.parent_id, "data_curve", f"data-curve {chosen.trial_id}",
                                    {"trial_id": chosen.trial_id, "select": select, "seeds": seeds,
                                     "fractions": " ".join(f"{f:g}" for f in fractions)})
    try:
        runs = measure(cand, dataset, fractions, seeds, device, log)
        curve = fit_curve(runs, len(dataset.pool))
        with tempfile.TemporaryDirectory(prefix="emule-data-curve-") as tmp:
            files = write_files(curve, Path(tmp), f"{record.name}: learning curve of {chosen.trial_id}")
            tracker.finish_analysis(run_id, record.parent_id, {**curve.metrics(), TRAINING_COMPUTE: work.flops},
                                    files, curve.summary())
    except BaseException as e:
        tracker.fail_analysis(run_id, f"{type(e).__name__}: {e}")
        raise
    for line in curve.lines():
        log(line)
    return curve


def after_search(spec: Spec, name: str, out: IO[str]) -> None:
    """The spec's ``data_curve:`` on the completed search: its candidate's learning curve, logged beside it.
    A failure is told in one line; the search stands as it completed."""
    c = spec.data_curve
    say = lambda line: print(line, file=out, flush=True)  # noqa: E731
    try:
        run(Tracker(spec.tracking.uri, spec.tracking.experiment), name, c.select, c.fractions, c.seeds,
                       log=say)
    except Exception as e:  # the search's record is complete; the curve can be run again with `emule data-curve`
        say(f"data curve: failed ({type(e).__name__}: {e}); the search is complete - run it again with "
            f"`emule data-curve {name}`")

