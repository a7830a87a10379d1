"""`emule data-curve`'s own logic: nested stratified fractions, the power-law fit and its intervals, a flat curve
called flat, and bad arguments refused in one line before any store or data is touched. The command end to end on
a real search is in tests/test_accuracy.py."""

from __future__ import annotations

import numpy as np
import pytest

from search.cli import main
from search.delivery.data_curve import Run, check_arguments, fit_curve, nested_rows, power_law


def test_nested_fractions_keep_every_class_and_grow_by_inclusion():
    labels = np.repeat([0, 1, 2], [40, 20, 6])
    fractions = (0.1, 0.25, 0.5, 1.0)
    sets = nested_rows(labels, fractions, seed=3, floor=1)
    for small, large in zip(sets, sets[1:]):
        assert set(small) <= set(large)
    for f, rows in zip(fractions, sets):
        counts = np.bincount(labels[rows], minlength=3)
        assert counts.tolist() == [max(1, round(f * n)) for n in (40, 20, 6)]
    assert len(sets[-1]) == len(labels)
    floored = nested_rows(labels, fractions, seed=3, floor=5)[0]
    assert np.bincount(labels[floored]).tolist() == [5, 5, 5]  # tiny data: at least the floor of every class
    assert not np.array_equal(nested_rows(labels, fractions, seed=4)[1], sets[1])  # another seed, other rows


def runs_from(law, fractions=(0.1, 0.2, 0.35, 0.5, 0.75, 1.0), rows=400, folds=5, seeds=3, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return [Run(k, s, f, round(f * rows), float(law(f * rows) + rng.normal(0, noise)))
            for s in range(seeds) for k in range(folds) for f in fractions]


@pytest.mark.parametrize("a, b, c", [
    (1.0, 0.8, 0.4),  # the error falls as a power law towards zero
    (0.9, 8.0, 1.0),  # a ceiling below perfect: the curve bends over where it is measured
])
def test_a_known_power_law_is_recovered_within_its_interval(a, b, c):
    truth = lambda n: power_law(np.asarray(n, float), a, b, c)  # noqa: E731
    curve = fit_curve(runs_from(truth), labelled=500, bootstrap=200)
    assert curve.fit is not None and not curve.flat
    assert curve.ceiling_seen == (a < 1)  # the law the points show: a ceiling only where they bend
    for times in (2, 4):
        value, low, high = curve.predicted[f"x{times}"]
        assert low <= float(truth(times * 500)) <= high
        assert value == pytest.approx(float(truth(times * 500)), abs=0.02)
    need, low, high = curve.predicted["rows_plus_1"]
    assert low <= need <= high and need > 500  # a point more takes more rows than there are
    text = "\n".join(curve.lines())
    assert "with 2x the labelled rows (1000)" in text and "flat" not in text


def test_a_ceiling_the_points_do_not_show_is_not_fit():
    """Four noisy points from ten to fifty rows, as a tiny set gives: too few for three parameters (AICc), so the
    error law is fit, whatever the truth's ceiling."""
    truth = lambda n: power_law(np.asarray(n, float), 0.95, 1.0, 0.5)  # noqa: E731
    curve = fit_curve(runs_from(truth, fractions=(0.2, 0.35, 0.5, 1.0), rows=50, noise=0.03), labelled=50)
    assert not curve.ceiling_seen and curve.fit[0] == 1.0
    assert "no ceiling below perfect seen" in "\n".join(curve.lines())


def test_a_flat_curve_is_called_flat():
    curve = fit_curve(runs_from(lambda n: 0.9), labelled=500, bootstrap=100)
    assert curve.flat
    assert "more labels will not pay" in curve.summary()
    assert curve.enough() == 0.1  # the smallest fraction is as good as all the rows


@pytest.mark.parametrize("fractions, seeds, message", [
    ([0.0, 0.5], 3, "--fractions: 0.0 not accepted; accepted: numbers in (0, 1]"),
    ([0.5, 1.5], 3, "--fractions: 1.5 not accepted"),
    ([0.5], 3, "--fractions: [0.5] gives 2 point(s) with 1.0; accepted: at least two fractions below 1"),
    ([0.2, 0.5], 0, "--seeds: 0 not accepted; accepted: an integer >= 1"),
])
def test_bad_arguments_are_refused_in_one_line(fractions, seeds, message, tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        check_arguments(fractions, seeds)
    monkeypatch.chdir(tmp_path)
    argv = ["data-curve", "some-search", "--fractions", *map(str, fractions), "--seeds", str(seeds)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emule data-curve: {message}") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # refused before any store was opened
