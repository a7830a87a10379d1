"""One classical baseline's test accuracy alone: fit on a bundled set's training rows, predict its test rows.

For a set where the search's time bound (``search.baseline_seconds``) skips a baseline - PLAID's 1-NN DTW, whose
folds and test split together are estimated at hours here - this gives the number the accuracy targets need, for a
fraction of the work (no selection folds). The baseline is the search's own (``search.trial.baselines.METHODS``), seeing
the series as the search's baselines do (``series_matrix``: channels concatenated, zero-padded to the longest).

    python bench/baseline_test.py --set plaid --baseline nn_dtw_window --jobs 2
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from emule_models.data import load_builtin
from search.trial.baselines import METHODS, series_matrix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="plaid")
    ap.add_argument("--baseline", default="nn_dtw_window", choices=sorted(METHODS))
    ap.add_argument("--jobs", type=int, default=1, help="processes for aeon (its n_jobs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = load_builtin(args.set)
    x, y = series_matrix(ds.pool, ds), ds.pool.labels
    x_test, y_test = series_matrix(ds.test, ds), ds.test.labels
    method = METHODS[args.baseline]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = method.make(args.seed).set_params(n_jobs=args.jobs).fit(x, y)
        accuracy = float(np.mean(clf.predict(x_test) == y_test))
    print(f"{args.set} {method.label}: test accuracy {accuracy:.4f} (fit on {len(y)} rows, {len(y_test)} test rows, "
          f"series {x.shape[1]} x {x.shape[2]}), {time.perf_counter() - start:.0f} s with {args.jobs} job(s)")


if __name__ == "__main__":
    main()
