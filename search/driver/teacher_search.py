"""A distillation teacher named as a search (``distill.teacher: {search: NAME}``) made concrete as a search starts:
that search's best candidates by validation, written as YAML files the trials' teacher is read from."""

from __future__ import annotations

from pathlib import Path

from search.front.yardstick import best_by_validation
from search.record.searches import load_search, write_candidates
from search.record.tracking import Tracker
from search.spec.metrics import SIZE
from search.spec.schema import Spec
from search.trial.teacher import check_teachers

TEACHERS_DIR = Path(".emule") / "teachers"


def resolve_search_teacher(spec: Spec, tracker: Tracker,
                           out_dir: str | Path = TEACHERS_DIR) -> tuple[Spec, dict[str, str]]:
    """A spec whose ``distill.teacher`` is ``{search: NAME}`` made concrete: that search's best candidate by
    validation (``top: K``: its K best, an ensemble) exported as YAML into ``out_dir`` and named as the teacher.
    Returns (spec, tags for the new search's parent run linking it to the teacher's search); other specs come back
    as they are, with their tags."""
    if spec.distill is None:
        return spec, {}
    if spec.distill.paths():
        return spec, {"emule.teacher": ",".join(Path(p).stem for p in spec.distill.paths())}
    record = load_search(tracker, spec.distill.teacher["search"])
    record.require_data()  # the teacher is trained again on the data its search read
    finished = record.front.members + record.front.others
    best = best_by_validation(finished)
    if best is None:
        raise ValueError(f"distill.teacher: search {record.name} has no finished candidate; accepted: a search "
                         "with at least one candidate trained to its full budget")
    top = int(spec.distill.teacher.get("top", 1))
    # the same order as best_by_validation: validation accuracy, then fewer parameters
    ranked = sorted((r for r in finished if "test_accuracy" in r.metrics),
                    key=lambda r: (-r.metrics["val_accuracy"], r.metrics.get(SIZE, 0.0)))[:top]
    paths = write_candidates(tracker, record, ranked, Path(out_dir).resolve())
    teacher = str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]
    spec = spec.model_copy(update={"distill": spec.distill.model_copy(update={"teacher": teacher})})
    check_teachers(spec)
    return spec, {"emule.distilled_from": record.name, "emule.distilled_from_run": record.parent_id,
                  "emule.teacher": ",".join(p.stem for p in paths)}
