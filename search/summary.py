"""The search's front in words: the Markdown description of its parent run (MLflow shows it on the run's page)
and the links into MLflow's UI. Pure Python: ``search.tracking`` writes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote

from search.front import Front, Record
from search.metrics import UNITS, label
from search.spec import Objective

CONFIG_KEYS = ("attention", "depth", "width", "heads", "patch_len", "data_fraction", "selection")


def runs_link(experiment_id: str, parent_id: str, objectives: Sequence[Objective]) -> str:
    """The runs table of one search's front members, best first on the first objective, in MLflow's "model
    training" view (without ``workflowType`` MLflow 3 may open its GenAI view). A URL fragment: append it to the
    UI's address."""
    first = objectives[0]
    flt = f'tags.pareto = "true" and tags.`mlflow.parentRunId` = "{parent_id}"'
    return (f"#/experiments/{experiment_id}/runs?workflowType=machine_learning&searchFilter={quote(flt, safe='')}"
            f"&orderByKey={quote(f'metrics.`{first.metric}`', safe='')}"
            f"&orderByAsc={'true' if first.mode == 'min' else 'false'}")


def run_link(experiment_id: str, run_id: str) -> str:
    """A run's page, in the "model training" view."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def ui_address(tracking_uri: str) -> str:
    """Where the user opens MLflow's UI: the tracking server itself, or a local ``mlflow ui``."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/") + "/"
    return "http://127.0.0.1:5000/"


def ui_lines(tracking_uri: str, experiment_id: str, parent_id: str, objectives: Sequence[Objective]) -> list[str]:
    """How to open MLflow's UI on a search: the command for a local store, then links to the search's parent run
    and to its front in the runs table. ``tracking_uri`` without credentials."""
    address = ui_address(tracking_uri)
    lines = []
    if not tracking_uri.startswith(("http://", "https://")):
        lines.append(f"look at it in MLflow: mlflow ui --backend-store-uri {tracking_uri}, then open")
    lines.append(f"  the search (its front, baselines, pareto.html): {address}{run_link(experiment_id, parent_id)}")
    lines.append(f"  its front in the runs table: {address}{runs_link(experiment_id, parent_id, objectives)}")
    return lines


def candidate_name(trial_id: str, model: Mapping, data: Mapping | None = None) -> str:
    """A child run's name: the trial id first (MLflow's table cuts long names), then what the candidate is,
    e.g. ``3a7e17fe softmax d2 w64``; ``f0.5`` when it trains on a fraction of the data."""
    name = f"{trial_id} {model['attention']} d{model['depth']} w{model['width']}"
    fraction = float((data or {}).get("data_fraction", 1.0))
    return name + (f" f{fraction:.2g}" if fraction < 1 else "")


def describe_front(name: str, experiment_id: str, parent_id: str, front: Front, objectives: Sequence[Objective],
                   baselines: Mapping[str, dict] | None = None, best: Record | None = None,
                   validation: str | None = None) -> str:
    """The parent run's description: the front as a table (trial ids link to their runs), the knee, the
    hypervolume with its reference point and scale, the classical baselines and the selection gap, the link to
    the front in the runs table, and the units."""
    total = len(front.members) + len(front.others)
    lines = [f"## Search `{name}`: Pareto front of {len(front.members)} among {total} finished candidates", ""]
    first = objectives[0]
    # one line first: MLflow shows the top of a long description until "Show more" is clicked
    knee = f" - knee `{front.knee.trial_id}`" if front.knee is not None else ""
    lines += [f"Hypervolume {front.hypervolume:.4g}{knee} - [the front in the runs table]"
              f"({runs_link(experiment_id, parent_id, objectives)}) - the interactive front: artifact `pareto.html`.",
              ""]
    extra = [m for m in ("test_accuracy",) if all(m in r.metrics for r in front.members)]
    shown = [o.metric for o in objectives] + [m for m in extra if m not in {o.metric for o in objectives}]
    lines.append("| trial | " + " | ".join(label(m) + _arrow(m, objectives) for m in shown) + " | configuration |")
    lines.append("|---" * (len(shown) + 2) + "|")
    ordered = sorted(front.members, key=lambda r: r.metrics[first.metric], reverse=first.mode == "max")
    for r in ordered:
        knee = " (knee)" if r is front.knee else ""
        cells = [f"[{r.trial_id}]({run_link(experiment_id, r.run_id)}){knee}"]
        cells += [fmt(r.metrics[m]) for m in shown]
        cells.append(configuration(r.params))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
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
    lines += _accuracy(baselines or {}, best, validation)
    lines.append(f"**See the front in the runs table:** [front members of this search, best "
                 f"{first.metric} first]({runs_link(experiment_id, parent_id, objectives)}) (the runs carry "
                 "`pareto` and `knee` as 0/1 metrics and true/false tags). The interactive front is the artifact "
                 "`pareto.html`; `pareto.csv` and `pareto.parquet` hold this table, `pareto.png` the static plot.")
    lines.append("")
    lines.append("**Units:** " + "; ".join(f"`{m}`: {UNITS[m]}" for m in shown if m in UNITS) + ".")
    return "\n".join(lines) + "\n"


def configuration(params: Mapping) -> str:
    return ", ".join(f"{k}={_short(params[k])}" for k in CONFIG_KEYS if k in params)


def fmt(v: float) -> str:
    """Numbers as people read them: 0.732, 21.5k, 1.31M, 4.2e+10."""
    v = float(v)
    if v == 0 or 1e-3 <= abs(v) < 1000:
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.4g}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale and abs(v) < scale * 1000:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


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
        gap = m["val_accuracy"] - m["test_accuracy"]
        lines.append(f"**Honest accuracy.** Best by validation: `{best.trial_id}`, val_accuracy "
                     f"{m['val_accuracy']:.3f} ({validation or 'validation'}), test_accuracy {m['test_accuracy']:.3f} "
                     f"(refit on every training row, scored once on the official test split); selection gap "
                     f"{gap:+.3f} (validation minus test).")
        lines.append("")
    if baselines:
        lines += ["Classical baselines on the same folds:", "",
                  "| baseline | val_accuracy | test_accuracy | fit time |", "|---|---|---|---|"]
        for r in baselines.values():
            if "skipped" in r:
                lines.append(f"| {r['label']} | skipped: {r['skipped']} | | |")
            else:
                lines.append(f"| {r['label']} | {r['val_accuracy']:.3f} | {r['test_accuracy']:.3f} | "
                             f"{r['fit_seconds']:.1f} s |")
        lines.append("")
    return lines


def _short(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(f)) if f.is_integer() else f"{f:.3g}"
