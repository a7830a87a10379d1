"""Which rows to label next (`emule suggest-labels`): a finished candidate's fold models rank the data's unlabelled
rows (those whose label is null).

The chosen candidate is trained again as selection trained it - its own recipe, the search's folds, one model per
fold (``search.trial.validation.cross_validate``) - and those models look at every unlabelled row, and at the labelled
training pool for coverage. A strategy (``STRATEGIES``) then picks the ``n`` rows to label, best first:

- ``margin``: ``1 - (p1 - p2)``, p1 and p2 the two largest of the fold models' mean class probability: near 1
  where the models cannot tell the two likeliest classes apart, 0 where they are sure (margin sampling, Scheffer
  et al. 2001). Sorted, highest first.
- ``entropy``: the entropy of the mean class probability over ``log(classes)``, in [0, 1] (Settles 2009's
  survey): every class's doubt counts, not only the top two. Sorted, highest first.
- ``kcenter``: greedy k-center on the fold models' pooled representations (L2-normalised per model, concatenated
  over them) with the labelled pool's rows as centres already taken: each pick is the unlabelled row farthest from
  every labelled row and every earlier pick (the core-set of Sener & Savarese 2018). Its score is that distance.
  It reads no prediction: it covers what the labelled rows do not.
- ``mix``: BADGE (Ash et al. 2020): each row's gradient embedding - the gradient of the cross-entropy, at the
  class the models predict, with respect to each fold model's head, ``(p_m - onehot(y)) x h_m``, concatenated over
  the models - picked by k-means++ seeding: first the longest, then each with probability proportional to its
  squared distance from the nearest pick (seeded by the candidate's seed). An uncertain row has a long embedding and
  rows the model sees differently lie apart, so one batch is uncertain and diverse with no weight to tune. Its score
  is the distance at its pick (the first's: its length, the distance from a row the models are sure of).

Uncertainty alone tends to pick near-duplicates in a batch; coverage alone ignores what the model already knows;
BADGE was the most robust over batch sizes and data sets in Ash et al. How the four compare on the bundled sets,
from 20% of the labels up: ``bench/results/label_suggestions.md``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emule_models.cost import training_flops
from emule_models.data import Dataset
from emule_models.data.dataset import Split
from emule_models.data.selection import k_center_radii, nearest_distances
from search.spec.results import EPOCH, PRETRAIN_SAMPLES, SAMPLES_SEEN, TRAINING_COMPUTE
from search.trial.candidate import Candidate, refuse_distilled
from search.trial.validation import FoldModels, class_floor, cross_validate, describe, selection_folds

STRATEGIES = ("margin", "entropy", "kcenter", "mix")
DEFAULT_STRATEGY = "margin"
FILE = "label_suggestions.parquet"  # the artifact's name in MLflow, whatever --out is
KIND = "label_suggestions"  # the analysis child run's kind (tag emule.kind)
BATCH = 256
COLUMNS = ("row", "rank", "score", "predicted", "probability")  # the file's own, beside the data's id column


def check_arguments(n: int, strategy: str, out: Path | None = None) -> None:
    """Refuse bad arguments in one line, before any store or data is touched."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"--n: {n!r} not accepted; accepted: an integer >= 1 (the rows to suggest)")
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy: {strategy!r} not accepted; accepted: {list(STRATEGIES)}")
    if out is not None and Path(out).suffix != ".parquet":
        raise ValueError(f"--out: {str(out)!r} not accepted; accepted: a file name ending in .parquet")


def check_unlabelled(dataset: Dataset, search: str) -> int:
    """The number of unlabelled rows; refused in one line when there are none."""
    if dataset.unlabelled is None or not len(dataset.unlabelled):
        raise ValueError(f"data: search {search}'s data ({dataset.name}) has no unlabelled rows; accepted: a "
                         "dataset with rows whose label is null (append the rows to label to its Parquet file, "
                         "label left null)")
    return len(dataset.unlabelled)


# ------------------------------------------------------------------------------------------------ scores (numpy)
def margin(probs: np.ndarray) -> np.ndarray:
    """``1 - (p1 - p2)`` per row of mean class probabilities (n, classes): 1 = a tie of the top two."""
    top = np.sort(probs, axis=1)
    return 1.0 - (top[:, -1] - top[:, -2])


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of each row of (n, classes) over ``log(classes)``: 0 = sure, 1 = uniform."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(1) / math.log(probs.shape[1])


def by_score(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` highest scores' positions, highest first (ties in row order), and those scores."""
    order = np.argsort(-scores, kind="stable")[:n]
    return order, scores[order]


def covering(unlabelled: np.ndarray, labelled: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center over ``unlabelled`` (u, d) with the ``labelled`` rows (m, d) as centres already taken: ``n``
    positions into ``unlabelled``, each the farthest from every centre before it, and that distance."""
    return k_center_radii(unlabelled, n, nearest_distances(unlabelled, labelled))


def badge(probs: np.ndarray, pooled: np.ndarray, n: int, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray]:
    """BADGE's k-means++ seeding on gradient embeddings (see the module docstring): ``n`` positions, picked in order,
    and each one's distance to the nearest pick before it (the first's: its length).

    Args:
        probs: (models, rows, classes) each fold model's class probabilities.
        pooled: (models, rows, width) each fold model's pooled representation (what its head reads).

    A row's embedding ``a_m x h_m`` (outer product, per model) is never built: the squared distance of two rows is
    ``sum_m |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 (a_i . a_j)(h_i . h_j)``, so memory stays at rows x (classes +
    width) per model, whatever the classes.
    """
    predicted = probs.mean(0).argmax(1)  # the class the models predict together: the hypothetical label
    a = probs - np.eye(probs.shape[2])[predicted][None]  # (M, N, K)
    a, h = a.astype(np.float64), pooled.astype(np.float64)
    sq = ((a ** 2).sum(2) * (h ** 2).sum(2)).sum(0)  # (N,) squared length of each gradient embedding

    def to(j: int) -> np.ndarray:  # squared distance of every row to row j
        cross = (np.einsum("mnk,mk->mn", a, a[:, j]) * np.einsum("mnw,mw->mn", h, h[:, j])).sum(0)
        return np.maximum(sq + sq[j] - 2 * cross, 0.0)

    rows = len(sq)
    first = int(np.argmax(sq))
    picks, radii, nearest = [first], [math.sqrt(sq[first])], to(first)
    nearest[first] = 0.0
    for _ in range(min(n, rows) - 1):
        left = np.setdiff1d(np.arange(rows), picks)
        weight = nearest[left]
        j = int(rng.choice(left, p=weight / weight.sum())) if weight.sum() > 0 else int(left[0])
        picks.append(j)
        radii.append(math.sqrt(nearest[j]))
        nearest = np.minimum(nearest, to(j))
        nearest[picks] = 0.0
    return np.asarray(picks, np.int64), np.asarray(radii)


@dataclass(frozen=True)
class Outputs:
    """What the fold models make of some rows: class probabilities (models, rows, classes) and pooled
    representations (models, rows, width)."""

    probs: np.ndarray
    pooled: np.ndarray

    def embeddings(self) -> np.ndarray:
        """(rows, models x width): each model's representation L2-normalised, concatenated over the models (a
        squared distance is then a sum over the models' spaces, as for the proxy's embeddings)."""
        unit = self.pooled / np.maximum(np.linalg.norm(self.pooled, axis=2, keepdims=True), 1e-8)
        return np.concatenate(list(unit), axis=1)


def outputs(models: Sequence[torch.nn.Module], split: Split, device: str = "cpu") -> Outputs:
    """Each model's class probabilities and pooled representation of every row of ``split``, in eval mode."""
    probs, pooled = [], []
    order = split.by_length()  # batches of like lengths; the rows are put back in order below
    row_order = np.argsort(order)
    with torch.no_grad():
        for model in models:
            model.eval()
            p, h = [], []
            for start in range(0, len(split), BATCH):
                inputs, valid, _ = split.batch(order[start:start + BATCH], device)
                features = model.features(inputs, valid)  # (B, W)
                p.append(torch.softmax(model.head(features), -1).cpu())  # (B, K)
                h.append(features.cpu())
            probs.append(torch.cat(p).numpy()[row_order])
            pooled.append(torch.cat(h).numpy()[row_order])
    return Outputs(np.stack(probs), np.stack(pooled))


def rank(strategy: str, unlabelled: Outputs, labelled: Outputs | None, n: int, seed: int = 0
         ) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` unlabelled rows to label first by ``strategy`` (positions into the unlabelled rows, best first)
    and their scores. ``labelled``: the labelled pool's outputs, which ``kcenter`` counts as covered."""
    n = min(n, unlabelled.probs.shape[1])
    mean = unlabelled.probs.mean(0)
    if strategy == "margin":
        return by_score(margin(mean), n)
    if strategy == "entropy":
        return by_score(entropy(mean), n)
    if strategy == "kcenter":
        if labelled is None:
            raise ValueError("kcenter: needs the labelled pool's outputs (the centres already taken)")
        return covering(unlabelled.embeddings(), labelled.embeddings(), n)
    if strategy == "mix":
        return badge(unlabelled.probs, unlabelled.pooled, n, np.random.default_rng(seed))
    raise ValueError(f"--strategy: {strategy!r} not accepted; accepted: {list(STRATEGIES)}")


# ------------------------------------------------------------------------------------------------ the command
@dataclass(frozen=True)
class Workload:
    """What the fold models cost before they train."""

    models: int
    epochs: int
    samples: int
    flops: float

    def line(self, scheme: str, unlabelled: int, labelled: int | None, pretrain: bool) -> str:
        """``labelled``: the labelled rows the models also look at (``kcenter``), None where they look at none."""
        extra = " (plus pretraining, as its recipe says)" if pretrain else ""
        rows = f"{unlabelled} unlabelled" + (f" and {labelled} labelled" if labelled is not None else "")
        return (f"label suggestions: {self.models} fold model(s) of {self.epochs} epochs ({scheme}, the candidate's "
                f"recipe), {self.samples:,} training samples{extra}, {self.flops:.3g} training FLOPs (3 x forward "
                f"per sample); then {rows} rows through each model")


def workload(cand: Candidate, dataset: Dataset) -> Workload:
    """The fold models' training samples: per fold, per class, the candidate's data fraction of the fit rows with
    the tiny-data floor (``select``'s quota, whatever the strategy), times the epochs."""
    labels = dataset.pool.labels
    floor, fraction = class_floor(labels), float(cand.data.get("data_fraction", 1.0))
    folds = selection_folds(cand.data_section, dataset)
    rows = 0
    for fit_rows, _ in folds:
        for count in np.unique(labels[fit_rows], return_counts=True)[1]:
            rows += count if fraction == 1.0 else min(count, max(1, floor, round(fraction * count)))
    samples = int(rows) * cand.training.epochs
    return Workload(len(folds), cand.training.epochs, samples, training_flops(cand.model, samples))


def train_fold_models(cand: Candidate, dataset: Dataset, device: str = "cpu",
                      log: Callable[[str], None] = print) -> tuple[FoldModels, int]:
    """The candidate's fold models, trained as its search trained them; progress about ten lines. Returns the
    models and the samples they saw (pretraining's included)."""
    refuse_distilled(cand)
    kept, epochs, start, last = FoldModels(), cand.training.epochs, time.perf_counter(), {}
    every = max(1, epochs // 10)
    for last in cross_validate(cand, dataset, selection_folds(cand.data_section, dataset), keep=kept, device=device):
        epoch = int(last[EPOCH])
        if epoch % every == 0 or epoch == epochs:
            left = (time.perf_counter() - start) / epoch * (epochs - epoch)
            log(f"  epoch {epoch}/{epochs}: fold-mean val_accuracy {last['val_accuracy']:.3f}; ~{left:.0f}s left")
    return kept, int(last.get(SAMPLES_SEEN, 0)) + int(last.get(PRETRAIN_SAMPLES, 0))


@dataclass
class Suggestions:
    """The rows to label next, best first, and where they came from."""

    rows: np.ndarray  # 0-based row numbers in the data as read
    ids: np.ndarray | None  # their values in data.id's column, where the data has one
    id_column: str | None
    scores: np.ndarray
    predicted: list[str]
    probability: np.ndarray
    strategy: str
    unlabelled: int

    def table(self, meta: dict | None = None):
        import pyarrow as pa

        columns = {"row": pa.array(self.rows, pa.int64())}
        if self.ids is not None:
            columns[self.id_name] = pa.array(self.ids.tolist())
        columns.update({"rank": pa.array(np.arange(1, len(self.rows) + 1), pa.int32()),
                        "score": pa.array(self.scores, pa.float64()),
                        "predicted": pa.array(self.predicted, pa.string()),
                        "probability": pa.array(self.probability, pa.float64())})
        table = pa.table(columns)
        return table.replace_schema_metadata({b"emule.label_suggestions": json.dumps(meta).encode()}) if meta else table

    @property
    def id_name(self) -> str | None:
        """The id column's name in the file: the data's, unless the file's own columns take it (then ``<name>_id``)."""
        if self.id_column is None:
            return None
        return f"{self.id_column}_id" if self.id_column in COLUMNS else self.id_column

    def lines(self, top: int = 10) -> list[str]:
        named = self.ids is not None
        out = [f"rank    row{f'  {self.id_column:>12}' if named else ''}  score  predicted (probability)"]
        for i in range(min(top, len(self.rows))):
            name = f"  {self.ids[i]!s:>12}" if named else ""
            out.append(f"{i + 1:>4}  {self.rows[i]:>5}{name}  {self.scores[i]:.3f}  {self.predicted[i]} "
                       f"({self.probability[i]:.2f})")
        if len(self.rows) > top:
            out.append(f"... {len(self.rows) - top} more in the file")
        return out

    def summary(self, trial: str, models: int) -> str:
        return (f"{len(self.rows)} of {self.unlabelled} unlabelled rows to label next by {self.strategy} ({trial}'s "
                f"{models} fold model(s)); scores {self.scores.min():.3f} .. {self.scores.max():.3f}")


def suggest(models: Sequence[torch.nn.Module], dataset: Dataset, n: int, strategy: str, seed: int = 0,
            id_column: str | None = None, device: str = "cpu") -> Suggestions:
    """Rank ``dataset``'s unlabelled rows with trained ``models`` (see ``rank``); only unlabelled rows are ever
    suggested: never a labelled, validation or test row. ``id_column``: the data's ``id`` column, whose values
    name the rows beside their row numbers."""
    unlabelled = outputs(models, dataset.unlabelled, device)
    labelled = outputs(models, dataset.pool, device) if strategy == "kcenter" else None
    picks, scores = rank(strategy, unlabelled, labelled, n, seed)
    mean = unlabelled.probs.mean(0)[picks]  # (n, K)
    rows = dataset.unlabelled_rows if dataset.unlabelled_rows is not None else np.arange(len(dataset.unlabelled))
    named = id_column is not None and dataset.unlabelled_ids is not None
    ids = dataset.unlabelled_ids[picks] if named else None
    return Suggestions(rows[picks], ids, id_column if named else None, np.asarray(scores, np.float64),
                       [dataset.classes[c] for c in mean.argmax(1)], mean.max(1), strategy, len(dataset.unlabelled))


def default_out(search: str, strategy: str) -> Path:
    return Path(f"{search}.suggest-{strategy}.parquet")


def run(tracker, name: str, n: int, select: str = "best", strategy: str = DEFAULT_STRATEGY, out: Path | None = None,
        device: str = "cpu", log: Callable[[str], None] = print) -> Suggestions:
    """`emule suggest-labels`: the chosen candidate of search ``name`` (``best``, ``knee`` or a trial id), its cost
    printed first, its fold models trained, the ``n`` unlabelled rows to label next written to ``out`` (Parquet:
    ``row``, the data's id column where it has one, ``rank``, ``score``, ``predicted``, ``probability``) and logged
    as a child run of the search. ``tracker``: a ``search.record.tracking.Tracker``."""
    import pyarrow.parquet as pq

    from search.delivery.export import pick_candidate
    from search.record.searches import load_search
    from search.trial.candidate import candidate_dataset, data_in_place

    check_arguments(n, strategy, out)
    record = load_search(tracker, name)
    chosen, cand = pick_candidate(tracker, record, select)
    refuse_distilled(cand)
    data_in_place(cand.data_section, record.name, None, need="to rank its unlabelled rows")
    dataset = candidate_dataset(cand)
    unlabelled = check_unlabelled(dataset, record.name)
    out = Path(out) if out is not None else default_out(record.name, strategy)
    work = workload(cand, dataset)
    log(f"search {record.name}, trial {chosen.trial_id} (val_accuracy {chosen.metrics.get('val_accuracy', 0):.3f}):")
    log(work.line(describe(cand.data_section), unlabelled, len(dataset.pool) if strategy == "kcenter" else None,
                  bool(cand.training.pretrain_epochs)))
    if n > unlabelled:
        log(f"--n {n}: the data has {unlabelled} unlabelled rows; all of them are ranked")
    run_id = tracker.start_analysis(record.parent_id, KIND, f"suggest-labels {chosen.trial_id}",
                                    {"trial_id": chosen.trial_id, "select": select, "strategy": strategy, "n": n})
    try:
        kept, seen = train_fold_models(cand, dataset, device, log)
        found = suggest(kept.models, dataset, n, strategy, cand.training.seed, cand.data.get("id"), device)
        meta = {"search": record.name, "trial_id": chosen.trial_id, "strategy": strategy,
                "data": str(cand.data.get("path", cand.data.get("name")))}
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(found.table(meta), out)
        with tempfile.TemporaryDirectory(prefix="emule-suggest-") as tmp:
            logged = Path(tmp) / FILE
            shutil.copyfile(out, logged)
            metrics = {"suggested": len(found.rows), "unlabelled_rows": unlabelled,
                       "score_max": float(found.scores.max()), "score_min": float(found.scores.min()),
                       TRAINING_COMPUTE: training_flops(cand.model, seen)}
            tracker.finish_analysis(run_id, record.parent_id, metrics, [logged],
                                    found.summary(chosen.trial_id, len(kept.models)))
    except BaseException as e:
        tracker.fail_analysis(run_id, f"{type(e).__name__}: {e}")
        raise
    for line in found.lines():
        log(line)
    where = f"the {found.id_name} column" if found.id_column else ("the row column: 0-based row numbers of the data "
                                                                     "as read (a folder: its files in path order)")
    log(f"wrote {out}: {len(found.rows)} of {unlabelled} unlabelled rows, best first; the rows are named by {where}")
    return found
