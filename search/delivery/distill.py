"""``emule distill SEARCH``: a finished search's best candidate (by validation) teaches its front members - or
the candidates of a fresh, small-model spec - in a new search, linked to the first by tags so the two fronts
compare in MLflow."""

from __future__ import annotations

from pathlib import Path

import yaml

from search.driver.checks import load_spec, parse_spec
from search.record.searches import load_search, write_candidates
from search.record.tracking import Tracker
from search.spec.schema import Spec

STUDENTS_DIR = Path(".emule") / "students"


def distill_spec(tracker: Tracker, experiment: str, name: str, alpha: float = 0.5, temperature: float = 4.0,
                 space: Path | None = None, trials: int | None = None, top: int = 1,
                 students_dir: Path = STUDENTS_DIR, cross_fit: int = 1) -> tuple[Spec, str]:
    """The spec of the distilled search, and its text as logged. The teacher is ``{search: NAME}`` (resolved to
    the best candidate when the search starts, which tags the new parent run with ``emule.distilled_from``).

    Args:
        space: a spec whose space holds the students (a fresh small-model space; same data as the teacher's).
            Without it the students are the first search's front members, each run once more with the teacher
            (``trials`` defaults to their number), in the first search's spec.
        trials: candidates of the new search.
        top: the teacher is the first search's ``top`` best candidates by validation, an ensemble (1: the best).
        cross_fit: ``distill.cross_fit`` (K >= 2: each row's soft label from one of K teacher models that did not
            learn from it).
    """
    record = load_search(tracker, name)
    if not record.front.members:
        raise ValueError(f"search: {record.name} has no front member to distil into; accepted: a search with at "
                         "least one candidate trained to its full budget")
    record.require_data()  # its best candidate is trained again, as the teacher, on the search's data
    raw = (load_spec(space) if space is not None else record.spec).model_dump(mode="json", exclude_none=True)
    raw["name"] = f"{record.spec.name}.distill"  # not "-": `emule pareto NAME` would pick it as NAME's newest
    teacher = {"search": record.name, **({"top": top} if top != 1 else {})}
    raw["distill"] = {"teacher": teacher, "alpha": alpha, "temperature": temperature,
                      **({"cross_fit": cross_fit} if cross_fit != 1 else {})}
    raw["search"] = {**raw["search"], "warm_start": [], **({"trials": trials} if trials else {})}
    raw["tracking"] = {"uri": tracker.uri, "experiment": experiment}
    parse_spec(raw)  # a bad --alpha or --trials is refused before any file is written
    if space is None:
        students = write_candidates(tracker, record, record.front.members, (students_dir / record.name).resolve())
        raw["search"].update(warm_start=[str(p) for p in students], trials=trials or len(students))
    return parse_spec(raw), yaml.safe_dump(raw, sort_keys=False)


