"""The search's front in words: the Markdown description of its parent run (MLflow shows it on the run's page), the
experiment's description, the runs-table views, and the links into MLflow's UI. Pure Python: ``search.record.tracking``
writes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote

from search.front.state import Front, Record, ordered
from search.spec.metrics import UNITS, fmt
from search.spec.results import SIZE, TEST_ACCURACY
from search.spec.schema import Objective

__all__ = ["artifact_link", "candidate_name", "configuration", "describe_front", "experiment_link",
           "experiment_note", "fmt", "front_view", "front_view_key", "run_link", "runs_link", "searches_view",
           "ui_lines", "verdict", "view_link"]

CONFIG_KEYS = ("attention", "depth", "width", "heads", "patch_len", "data_fraction", "selection")
# MLflow keeps a run's description (a tag) up to this many characters and cuts the rest without a word
DESCRIPTION_LIMIT = 8000
# MLflow's Markdown tables have no cell padding ("1-NN Euclidean0.575"); its sanitiser drops style attributes, so
# the gap is a space in the text itself
GAP = "&emsp;"
ML_VIEW = "workflowType=machine_learning"  # MLflow 3 opens its GenAI pages without it (see experiment_note)
SEARCHES_VIEW = "emule-searches"  # the experiment's view of its searches (one row per parent run)
EXPERIMENT_NOTE_START = "EMuLe searches"  # how an experiment description EMuLe wrote starts (others are left alone)


def runs_link(experiment_id: str, parent_id: str, objectives: Sequence[Objective]) -> str:
    """The runs table of one search's front members, best first on the first objective, in MLflow's "model
    training" view, as URL state alone (no columns: MLflow keeps those in a view, ``front_view``). A URL fragment:
    append it to the UI's address."""
    first = objectives[0]
    return (f"#/experiments/{experiment_id}/runs?{ML_VIEW}&searchFilter={quote(_front_filter(parent_id), safe='')}"
            f"&orderByKey={quote(f'metrics.`{first.metric}`', safe='')}"
            f"&orderByAsc={'true' if first.mode == 'min' else 'false'}")


def run_link(experiment_id: str, run_id: str) -> str:
    """A run's page, in the "model training" view."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}"


def artifact_link(experiment_id: str, run_id: str, path: str) -> str:
    """One of a run's artifacts, opened in MLflow's artifact viewer (an HTML file renders there)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}/artifacts/{path}?{ML_VIEW}"


def experiment_link(experiment_id: str) -> str:
    """The experiment's searches, newest first, with their verdicts and hypervolumes (the view ``searches_view``)."""
    return view_link(experiment_id, SEARCHES_VIEW)


def view_link(experiment_id: str, key: str) -> str:
    """The runs table as a view saved on the experiment (MLflow's shared view state: its filter, order and
    columns). MLflow applies a view only when the URL has no filter or order of its own."""
    return f"#/experiments/{experiment_id}/runs?{ML_VIEW}&viewStateShareKey={quote(key, safe='')}"


def front_view_key(parent_id: str) -> str:
    return f"emule-front-{parent_id}"


def front_view(parent_id: str, objectives: Sequence[Objective], params: Sequence[str] = ()) -> dict:
    """The runs-table view of one search's front: its members, best first on the first objective, with the
    objectives as columns in the spec's order, then test accuracy, the knee mark and the searched ``params`` (MLflow
    would list metrics alphabetically, and none of them until they are picked)."""
    first = objectives[0]
    metrics = [o.metric for o in objectives]
    metrics += [m for m in (TEST_ACCURACY, "knee") if m not in metrics]
    columns = [f"metrics.`{m}`" for m in metrics] + [f"params.`{p}`" for p in params]
    return {"searchFilter": _front_filter(parent_id), "orderByKey": f"metrics.`{first.metric}`",
            "orderByAsc": first.mode == "min", "selectedColumns": columns, "columnOrder": columns}


def searches_view() -> dict:
    """The runs-table view of an experiment's searches: one row per parent run, newest first, its description's
    first line (the verdict), hypervolume, front size and selection gap."""
    columns = ["attributes.`Description`", "metrics.`hypervolume`", "metrics.`front_size`",
               "metrics.`selection_gap`", "attributes.`Dataset`"]
    return {"searchFilter": 'tags.`emule.kind` = "search"', "orderByKey": "attributes.start_time",
            "orderByAsc": False, "selectedColumns": columns, "columnOrder": columns}


def experiment_note(experiment_id: str) -> str:
    """The experiment's description: what it holds, and the way to its searches in the "model training" view.
    MLflow shows its start as plain text on its home page, and its first line - the link in it - at the top of
    every page of the experiment, GenAI ones included."""
    return (f"{EXPERIMENT_NOTE_START} - [open them in the Model training view]({experiment_link(experiment_id)}): "
            "one parent run per search (its verdict against the classical baselines and its Pareto front in its "
            "description, the interactive front in its artifact pareto.html), one child run per candidate.\n\n"
            "If MLflow opens this experiment on its GenAI pages (Overview, Traces), click *Model training* at the "
            "top left once: the browser remembers it, on every page.\n")


def ui_address(tracking_uri: str) -> str:
    """Where the user opens MLflow's UI: the tracking server itself, or a local ``mlflow ui``."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/") + "/"
    return "http://127.0.0.1:5000/"


def ui_lines(tracking_uri: str, experiment_id: str, parent_id: str, objectives: Sequence[Objective]) -> list[str]:
    """How to open MLflow's UI on a search: the command for a local store, then links to the experiment's
    searches, to the search's parent run and to its front in the runs table. ``tracking_uri`` without
    credentials. The front's link is a view ``search.record.tracking.Tracker.save_front_view`` saves."""
    address = ui_address(tracking_uri)
    lines = []
    if not tracking_uri.startswith(("http://", "https://")):
        lines.append(f"look at it in MLflow: mlflow ui --backend-store-uri {tracking_uri}, then open")
    lines.append(f"  every search of the experiment: {address}{experiment_link(experiment_id)}")
    lines.append(f"  this search (its verdict, front, baselines, pareto.html): {address}"
                 f"{run_link(experiment_id, parent_id)}")
    lines.append(f"  its front in the runs table: {address}{view_link(experiment_id, front_view_key(parent_id))}")
    return lines


def candidate_name(trial_id: str, model: Mapping, data: Mapping | None = None) -> str:
    """A child run's name: the trial id first (MLflow's table cuts long names), then what the candidate is,
    e.g. ``3a7e17fe softmax d2 w64``; ``f0.5`` when it trains on a fraction of the data."""
    name = f"{trial_id} {model['attention']} d{model['depth']} w{model['width']}"
    fraction = float((data or {}).get("data_fraction", 1.0))
    return name + (f" f{fraction:.2g}" if fraction < 1 else "")


def verdict(best: Record | None, baselines: Mapping[str, dict] | None) -> str:
    """One line: the best candidate by validation against the best classical baseline, e.g. ``Best 0.950 val /
    0.930 test (3a7e17fe, 12k params) vs ROCKET 0.940 val / 0.930 test``. Plain text: MLflow shows a description's
    start as it is in its runs table's Description column and on its home page. "" without a best candidate."""
    if best is None:
        return ""
    m = best.metrics
    size = f", {fmt(m[SIZE])} params" if SIZE in m else ""
    line = f"Best {m['val_accuracy']:.3f} val / {m[TEST_ACCURACY]:.3f} test ({best.trial_id}{size})"
    ran = [r for r in (baselines or {}).values() if "val_accuracy" in r]
    if ran:
        top = max(ran, key=lambda r: r["val_accuracy"])
        line += f" vs {top['label']} {top['val_accuracy']:.3f} val / {top['test_accuracy']:.3f} test"
    elif baselines:
        line += " - no classical baseline ran (" + ", ".join(r["label"] for r in baselines.values()) + " skipped)"
    return line


def describe_front(name: str, experiment_id: str, parent_id: str, front: Front, objectives: Sequence[Objective],
                   baselines: Mapping[str, dict] | None = None, best: Record | None = None,
                   validation: str | None = None) -> str:
    """The parent run's description. MLflow shows its first 100 pixels until "Show more" is clicked, fading their
    lower half: so the verdict (``verdict``) comes first, then one line with the front's size, hypervolume and knee
    and links to the front in the runs table and to ``pareto.html``; then the front as a table (trial ids link to
    their runs), the knee, the hypervolume with its reference point and scale, the honest accuracy, the classical
    baselines, the files and the units. Rows are left out, last first, where MLflow would cut the text."""
    total = len(front.members) + len(front.others)
    head = [verdict(best, baselines), ""] if best is not None else []
    knee = f"; knee {front.knee.trial_id}" if front.knee is not None else ""
    head += [f"Pareto front of {len(front.members)} among {total} finished candidates of search `{name}`; "
             f"hypervolume {front.hypervolume:.4g}{knee} - "
             f"[the front in the runs table]({view_link(experiment_id, front_view_key(parent_id))}) - "
             f"[pareto.html]({artifact_link(experiment_id, parent_id, 'pareto.html')}) (interactive)", ""]
    extra = [m for m in (TEST_ACCURACY,) if all(m in r.metrics for r in front.members)]
    shown = [o.metric for o in objectives] + [m for m in extra if m not in {o.metric for o in objectives}]
    # headers without units (the Units line says them): the configuration keeps to one line beside them
    table = [_row(["trial"] + [m + _arrow(m, objectives) for m in shown] + ["configuration"]),
             "|---" * (len(shown) + 2) + "|"]
    rows = [_row([f"[{r.trial_id}]({run_link(experiment_id, r.run_id)})" + ("&nbsp;(knee)" if r is front.knee else "")]
                 + [fmt(r.metrics[m]) for m in shown] + [configuration(r.params).replace(" ", "&nbsp;")])
            for r in ordered(front, objectives)]
    rest = _rest(front, objectives, shown, baselines or {}, best, validation)
    shown_rows = len(rows)
    while True:
        cut = len(rows) - shown_rows
        more = [f"... and {cut} more front members in `pareto.csv`.", ""] if cut else []
        text = "\n".join(head + table + rows[:shown_rows] + [""] + more + rest) + "\n"
        if len(text) <= DESCRIPTION_LIMIT or shown_rows == 0:
            return text
        shown_rows -= 1


def _rest(front: Front, objectives: Sequence[Objective], shown: Sequence[str], baselines: Mapping[str, dict],
          best: Record | None, validation: str | None) -> list[str]:
    """What follows the front's table in the description."""
    lines = []
    if front.knee is not None:
        lines.append(f"**Knee** (the balanced compromise): `{front.knee.trial_id}`, the front member closest to the "
                     "ideal point once each objective is scaled to [0, 1] over the front.")
        lines.append("")
    lines.append(f"**Hypervolume** {front.hypervolume:.4g}, against the fixed reference point "
                 + ", ".join(f"{o.metric} = {o.reference:g}" for o in objectives)
                 + ". It is measured after " + _scale(objectives)
                 + ", so it compares across searches with the same objectives and reference point (larger is "
                 "better), not across different ones.")
    lines.append("")
    lines += _accuracy(baselines, best, validation)
    lines.append("**Files** (artifacts): `pareto.html` the interactive front, `pareto.csv` this table (rounded; "
                 "MLflow previews it), `pareto.parquet` the same at full precision, `pareto.png` the static plot. "
                 "The runs carry `pareto` and `knee` as 0/1 metrics and true/false tags.")
    lines.append("")
    lines.append("**Units:** " + "; ".join(f"`{m}`: {UNITS[m]}" for m in shown if m in UNITS) + ".")
    return lines


def configuration(params: Mapping) -> str:
    """A candidate in a few words, as its run's name says it: ``softmax d2 w64 h4 p16``; ``f0.5 el2n`` when it
    trains on a fraction of the data chosen by a selection strategy."""
    short = {"depth": "d", "width": "w", "heads": "h", "patch_len": "p"}
    parts = [str(params["attention"])] if "attention" in params else []
    parts += [f"{prefix}{_short(params[k])}" for k, prefix in short.items() if k in params]
    fraction = params.get("data_fraction")
    if fraction is not None and float(fraction) < 1:
        parts.append(f"f{float(fraction):.2g}")
        if "selection" in params:
            parts.append(str(params["selection"]))
    return " ".join(parts)


def _row(cells: Sequence[str]) -> str:
    """A Markdown table row, its cells apart: every cell but the last ends with a wide space."""
    return "| " + " | ".join(f"{c}{GAP}" for c in cells[:-1]) + f" | {cells[-1]} |"


def _front_filter(parent_id: str) -> str:
    return f'tags.pareto = "true" and tags.`mlflow.parentRunId` = "{parent_id}"'


def _arrow(metric: str, objectives: Sequence[Objective]) -> str:
    mode = next((o.mode for o in objectives if o.metric == metric), None)
    return {"max": " ↑", "min": " ↓"}.get(mode, "")


def _scale(objectives: Sequence[Objective]) -> str:
    logged = [o.metric for o in objectives if o.log]
    maxed = [o.metric for o in objectives if o.mode == "max"]
    parts = []
    if logged:
        parts.append("taking log10 of " + ", ".join(f"`{m}`" for m in logged) + " (their axes count decades)")
    if maxed:
        parts.append("negating " + ", ".join(f"`{m}`" for m in maxed) + " (every objective minimised)")
    return " and ".join(parts) or "nothing (every objective is minimised on its own scale)"


def _accuracy(baselines: Mapping[str, dict], best: Record | None, validation: str | None) -> list[str]:
    lines = []
    if best is not None:
        m = best.metrics
        gap = m["val_accuracy"] - m[TEST_ACCURACY]
        lines.append(f"**Honest accuracy.** Best by validation: `{best.trial_id}`, val_accuracy "
                     f"{m['val_accuracy']:.3f} ({validation or 'validation'}), test_accuracy {m[TEST_ACCURACY]:.3f} "
                     f"(refit on every training row, scored once on the official test split); selection gap "
                     f"{gap:+.3f} (validation minus test).")
        lines.append("")
    if baselines:
        lines += ["Classical baselines on the same folds:", "",
                  _row(["baseline", "val_accuracy", "test_accuracy", "fit time"]), "|---|---|---|---|"]
        for r in baselines.values():
            if "skipped" in r:
                lines.append(_row([r["label"], f"skipped: {r['skipped']}", "", ""]))
            else:
                lines.append(_row([r["label"], f"{r['val_accuracy']:.3f}", f"{r['test_accuracy']:.3f}",
                                   f"{r['fit_seconds']:.1f} s"]))
        lines.append("")
    return lines


def _short(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(f)) if f.is_integer() else f"{f:.3g}"
