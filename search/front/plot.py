"""``pareto.png``: the first objective against each other one, every finished candidate, the front labelled.

Each panel is a 2-D projection of an N-objective front, so a front member can look dominated in one panel (it is
better on an objective the panel does not show); the figure says so.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from search.front.state import Front
from search.spec.metrics import label
from search.spec.schema import Objective

PANEL_INCHES = 5.2  # wide enough for a panel's legend and labels on its own


def plot_front(front: Front, objectives: Sequence[Objective], path: Path,
               baselines: Mapping[str, dict] | None = None) -> None:
    """Write the plot: candidates in grey, front members in red with their trial ids, the 2-D trade-off staircase,
    the knee as a star, the classical baselines' validation accuracy (same folds) as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y_obj, x_objs = objectives[0], list(objectives[1:]) or list(objectives[:1])
    fig, axes = plt.subplots(1, len(x_objs), figsize=(PANEL_INCHES * len(x_objs), 4.8), squeeze=False,
                             layout="constrained")
    for ax, x_obj in zip(axes[0], x_objs):
        _panel(ax, front, x_obj, y_obj, baselines or {})
    title = (f"Pareto front: {len(front.members)} of {len(front.members) + len(front.others)} finished candidates, "
             f"hypervolume {front.hypervolume:.4g}")
    width_chars = int(PANEL_INCHES * len(x_objs) * 9)  # about 9 characters per inch at this font size
    fig.suptitle("\n".join(textwrap.wrap(title, width_chars)), fontsize=11)
    if len(objectives) > 2:
        note = (f"Each panel is a 2-D projection of a {len(objectives)}-objective front: a red point that looks "
                "dominated here is better on an objective this panel does not show.")
        fig.supxlabel("\n".join(textwrap.wrap(note, width_chars + 10)), fontsize=8, color="0.3")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _panel(ax, front: Front, x_obj: Objective, y_obj: Objective, baselines: Mapping[str, dict]) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    x, y = x_obj.metric, y_obj.metric
    for group, style in ((front.others, dict(c="0.6", s=18, label="candidates")),
                         (front.members, dict(c="C3", s=30, label="Pareto front", zorder=2))):
        if group:
            ax.scatter([r.metrics[x] for r in group], [r.metrics[y] for r in group], **style)
    for r in front.members:  # trial ids on the front, so the plot can be matched to runs
        ax.annotate(r.trial_id, (r.metrics[x], r.metrics[y]), xytext=(4, 4), textcoords="offset points",
                    fontsize=7, color="C3")
    if front.members:
        ax.step(*zip(*_staircase(front, x_obj, y_obj)), where="post", c="C3", lw=1)
    if front.knee is not None:
        ax.scatter([front.knee.metrics[x]], [front.knee.metrics[y]], marker="*", s=160, c="gold", edgecolors="k",
                   label=f"knee ({front.knee.trial_id})", zorder=3)
    if y == "val_accuracy":
        ran = [r for r in baselines.values() if "val_accuracy" in r]
        for i, r in enumerate(ran):
            ax.axhline(r["val_accuracy"], ls="--", lw=1, c=f"C{i + 4}",
                       label=f"{r['label']}: val {r['val_accuracy']:.3f}, test {r['test_accuracy']:.3f}")
    if x_obj.log:
        ax.set_xscale("log")
        # labelled ticks inside the data's range, as plain numbers: decade ticks alone make 4390 and 12966 read
        # the same (and a range within one decade gets none)
        ax.set_xticks(log_ticks(*ax.get_xlim()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: tick(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"{label(x)}, {x_obj.mode}" + (", log scale" if x_obj.log else ""))
    ax.set_ylabel(f"{label(y)}, {y_obj.mode}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _staircase(front: Front, x_obj: Objective, y_obj: Objective) -> list[tuple[float, float]]:
    """The 2-D trade-off among front members in this panel (the members no other one beats on both axes)."""
    pts = sorted((r.metrics[x_obj.metric], r.metrics[y_obj.metric]) for r in front.members)
    if x_obj.mode == "max":
        pts = pts[::-1]
    stair, best = [], -np.inf if y_obj.mode == "max" else np.inf
    for px, py in pts:
        if (py > best) if y_obj.mode == "max" else (py < best):
            best = py
            stair.append((px, py))
    return stair


def log_ticks(lo: float, hi: float, most: int = 8) -> list[float]:
    """Tick values between ``lo`` and ``hi`` on a log axis: 1-2-5 steps per decade, every integer step where the
    range is too narrow for three of them, only decades where it is too wide for ``most``."""
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    ticks: list[float] = []
    for steps in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0 ** d for d in decades for m in steps if lo <= m * 10.0 ** d <= hi]
        if len(ticks) >= 3:
            break
    if len(ticks) > most:
        ticks = [t for t in ticks if np.isclose(np.log10(t), round(np.log10(t)))]
    return ticks


def tick(v: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:g}{suffix}"
    return f"{v:g}"
