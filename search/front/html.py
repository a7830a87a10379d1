"""``pareto.html``: the front as one self-contained, interactive page (Plotly, its JavaScript embedded: no CDN, it
works offline and inside MLflow's artifact viewer).

Every pair of objectives as a scatter panel (all finished candidates, the front in red, the knee as a star, the
classical baselines as dashed lines where validation accuracy is an axis), then a parallel-coordinates view of
all candidates; hovering a point shows its trial id and configuration.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from search.front.state import Front, Record
from search.spec.metrics import fmt, label
from search.spec.schema import Objective

COLUMNS = 2  # panels per row: MLflow's artifact viewer is about 600 px wide
# A panel's plotting area as the page usually shows it (pixels), and a trial id's label on it: what placing labels
# apart goes by. Plotly does not move overlapping labels itself.
PANEL_PX = (240, 240)  # two panels a row in MLflow's artifact viewer beside its file list, its assistant open
CHAR_PX, LABEL_PX, MARKER_PX = 5.6, 12, 8  # 9 px text: a character's width, a line's height; the knee star's radius
PANEL = (-0.04, -0.04, 1.04, 1.04)  # the scaled data's box with the margin Plotly's autorange adds around it
# where a label may sit around its point, in order of preference
POSITIONS = ("top center", "bottom center", "middle right", "middle left", "top right", "top left", "bottom right",
             "bottom left")


def write_html(front: Front, objectives: Sequence[Objective], path: Path, title: str = "Pareto front",
               baselines: Mapping[str, dict] | None = None) -> None:
    try:
        import plotly  # noqa: F401
    except ImportError as e:
        raise ImportError("pareto.html needs plotly: pip install 'plotly>=6'") from e
    pairs_fig, parallel_fig = _pairs(front, objectives, baselines or {}), _parallel(front, objectives)
    body = [pairs_fig.to_html(include_plotlyjs=True, full_html=False, div_id="emule-pairs"),
            parallel_fig.to_html(include_plotlyjs=False, full_html=False, div_id="emule-parallel")]
    note = (f"{len(front.members)} front members (red) among {len(front.members) + len(front.others)} finished "
            f"candidates; hypervolume {front.hypervolume:.4g}. Each panel is a 2-D projection of the "
            f"{len(objectives)}-objective front: a red point can look dominated in a panel and be better on an "
            "objective it does not show. Hover a point for its trial id and configuration; drag on an axis of the "
            "parallel coordinates to filter.")
    path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
                    f"<body style='font-family:sans-serif;margin:8px'><h3>{html.escape(title)}</h3>"
                    f"<p style='font-size:13px;max-width:60em'>{html.escape(note)}</p>{''.join(body)}</body></html>\n",
                    encoding="utf-8")


def hover(r: Record, objectives: Sequence[Objective]) -> str:
    """A point's hover text: its trial id, objectives and configuration, numbers as people read them (lr 6.32e-4,
    flops 9.44k)."""
    lines = [f"<b>{r.trial_id}</b>"] + [f"{o.metric}: {fmt(r.metrics[o.metric])}" for o in objectives]
    if "test_accuracy" in r.metrics:
        lines.append(f"test_accuracy: {fmt(r.metrics['test_accuracy'])}")
    lines += [f"{k}: {fmt(v)}" for k, v in sorted(r.params.items())]
    return "<br>".join(html.escape(line, quote=False).replace("&lt;b&gt;", "<b>").replace("&lt;/b&gt;", "</b>")
                       for line in lines)


def _pairs(front: Front, objectives: Sequence[Objective], baselines: Mapping[str, dict]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pairs = list(itertools.combinations(objectives, 2)) or [(objectives[0], objectives[0])]
    rows = (len(pairs) + COLUMNS - 1) // COLUMNS
    cols = min(COLUMNS, len(pairs))
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.08, vertical_spacing=0.15)
    for i, (y_obj, x_obj) in enumerate(pairs):
        row, col = i // COLUMNS + 1, i % COLUMNS + 1
        for group, name, style in ((front.others, "candidates", dict(color="#999", size=7)),
                                   (front.members, "Pareto front", dict(color="#d62728", size=10))):
            if not group:
                continue
            labelled = group is front.members
            fig.add_trace(go.Scatter(
                x=[r.metrics[x_obj.metric] for r in group], y=[r.metrics[y_obj.metric] for r in group],
                mode="markers+text" if labelled else "markers",
                text=[r.trial_id for r in group] if labelled else None,
                textposition=_label_places(front, x_obj, y_obj) if labelled else None,
                textfont=dict(size=9, color="#d62728"), marker=style, name=name, legendgroup=name,
                showlegend=i == 0, hovertext=[hover(r, objectives) for r in group], hoverinfo="text"),
                row=row, col=col)
        if front.knee is not None:
            fig.add_trace(go.Scatter(
                x=[front.knee.metrics[x_obj.metric]], y=[front.knee.metrics[y_obj.metric]], mode="markers",
                marker=dict(symbol="star", size=16, color="gold", line=dict(color="black", width=1)),
                name=f"knee ({front.knee.trial_id})", legendgroup="knee", showlegend=i == 0,
                hovertext=[hover(front.knee, objectives)], hoverinfo="text"), row=row, col=col)
        for axis, obj in (("x", x_obj), ("y", y_obj)):
            update = fig.update_xaxes if axis == "x" else fig.update_yaxes
            update(title_text=f"{label(obj.metric)} {obj.mode}", type="log" if obj.log else "linear",
                   row=row, col=col)
        for j, r in enumerate(b for b in baselines.values() if "val_accuracy" in b):
            if "val_accuracy" in (x_obj.metric, y_obj.metric):
                line = dict(dash="dash", width=1, color=f"hsl({(j * 97) % 360},60%,40%)")
                text = f"{r['label']}: val {r['val_accuracy']:.3f}"
                if y_obj.metric == "val_accuracy":
                    fig.add_hline(y=r["val_accuracy"], line=line, annotation_text=text, row=row, col=col)
                else:
                    fig.add_vline(x=r["val_accuracy"], line=line, annotation_text=text, row=row, col=col)
    fig.update_layout(height=380 * rows + 60, autosize=True, margin=dict(l=60, r=20, t=40, b=60),
                      legend=dict(orientation="h", y=-0.12 / rows), hoverlabel=dict(align="left"))
    return fig


def _label_places(front: Front, x_obj: Objective, y_obj: Objective) -> list[str]:
    """Where each front member's trial id sits in the panel ``x_obj`` by ``y_obj`` (``label_positions`` on the
    panel's scaled coordinates)."""
    records = front.members + front.others

    def scaled(obj: Objective) -> list[float]:
        values = [float(r.metrics[obj.metric]) for r in records]
        if obj.log:
            values = [math.log10(v) if v > 0 else 0.0 for v in values]
        lo, hi = min(values), max(values)
        return [(v - lo) / (hi - lo) if hi > lo else 0.5 for v in values]

    points = list(zip(scaled(x_obj), scaled(y_obj)))
    n = len(front.members)
    return label_positions(points[:n], [r.trial_id for r in front.members], points[n:])


def label_positions(points: Sequence[tuple[float, float]], texts: Sequence[str],
                    others: Sequence[tuple[float, float]] = (), panel_px: tuple[float, float] = PANEL_PX) -> list[str]:
    """A Plotly ``textposition`` for each labelled point (coordinates scaled to [0, 1] across the panel) such that
    no two labels overlap and no label covers a point, where one of ``POSITIONS`` allows it; else the one that
    overlaps least. A label reaching past the panel (Plotly cuts it at the axes) counts as overlapping. Greedy, in
    the order given."""
    w_px, h_px = panel_px
    r_x, r_y = MARKER_PX / w_px, MARKER_PX / h_px
    markers = [(x - r_x, y - r_y, x + r_x, y + r_y) for x, y in [*points, *others]]
    placed: list[tuple[float, float, float, float]] = []
    chosen = []
    for i, ((x, y), text) in enumerate(zip(points, texts)):
        w, h = len(text) * CHAR_PX / w_px, LABEL_PX / h_px
        obstacles = placed + [m for j, m in enumerate(markers) if j != i]

        def overlap(position: str, x=x, y=y, w=w, h=h, obstacles=obstacles) -> float:
            box = label_box(position, x, y, w, h, r_x, r_y)
            outside = w * h - overlap_area(box, PANEL)
            total = outside + sum(overlap_area(box, o) for o in obstacles)
            return total if total > 1e-9 * w * h else 0.0  # rounding, not overlap

        best = min(POSITIONS, key=lambda p: (overlap(p) > 0, overlap(p), POSITIONS.index(p)))
        chosen.append(best)
        placed.append(label_box(best, x, y, w, h, r_x, r_y))
    return chosen


def label_box(position: str, x: float, y: float, w: float, h: float, r_x: float,
               r_y: float) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) a label of size ``w`` x ``h`` takes at ``position`` around the point (x, y)."""
    vertical, horizontal = position.split()
    x0 = {"center": x - w / 2, "right": x + r_x, "left": x - r_x - w}[horizontal]
    y0 = {"top": y + r_y, "middle": y - h / 2, "bottom": y - r_y - h}[vertical]
    return x0, y0, x0 + w, y0 + h


def overlap_area(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _parallel(front: Front, objectives: Sequence[Objective]):
    import plotly.graph_objects as go

    records = front.members + front.others
    dims = [dict(label=label(o.metric), values=[r.metrics[o.metric] for r in records]) for o in objectives]
    if records and all("test_accuracy" in r.metrics for r in records):
        dims.append(dict(label=label("test_accuracy"), values=[r.metrics["test_accuracy"] for r in records]))
    dims.append(dict(label="on the front", values=[1 if i < len(front.members) else 0 for i in range(len(records))],
                     tickvals=[0, 1], ticktext=["no", "yes"]))
    fig = go.Figure(go.Parcoords(line=dict(color=[1 if i < len(front.members) else 0 for i in range(len(records))],
                                           colorscale=[[0, "#bbb"], [1, "#d62728"]], cmin=0, cmax=1),
                                 dimensions=dims))
    fig.update_layout(title=dict(text="All finished candidates, front in red", y=0.98), height=440,
                      margin=dict(l=80, r=80, t=100, b=30))
    return fig
