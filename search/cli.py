"""The ``emule`` command line. Errors in the user's input print one line and exit 2, with no traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emule", description="Search small, fast, data-frugal multimodal "
                                     "Transformers; inspect the Pareto front; export and retrain the best.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("search", help="run a search spec on this machine (local Ray, local MLflow store)")
    p.add_argument("spec", type=Path)
    p.add_argument("--name", help="search name (default: the spec's name plus a timestamp)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs the local Ray instance may use")
    p.add_argument("--address", default=None, help="attach to a running Ray cluster instead (ray://... or HOST:PORT)")

    p = sub.add_parser("pareto", help="print a search's Pareto front")
    p.add_argument("name", help="search name, or a spec name for its newest search")
    _tracking_args(p)

    p = sub.add_parser("export", help="write front members as YAML configs that `emule train` retrains")
    p.add_argument("name")
    p.add_argument("--out", type=Path, default=Path("exports"))
    p.add_argument("--select", default="front", choices=["front", "knee", "budget"])
    p.add_argument("--max-params", type=float, help="with --select budget")
    p.add_argument("--max-flops", type=float, help="with --select budget")
    _tracking_args(p)

    p = sub.add_parser("train", help="retrain an exported config and save its weights")
    p.add_argument("config", type=Path)
    p.add_argument("--out", type=Path, default=None, help="weights file (default: next to the config, .pt)")

    sub.add_parser("datasets", help="list the built-in datasets")

    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, LookupError, ConnectionError, FileNotFoundError) as e:
        print(f"emule {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE


def _tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///./mlflow.db)")
    p.add_argument("--experiment", default="emule")


def cmd_search(args) -> int:
    from search.spec import load_spec

    spec = load_spec(args.spec)  # every spec error surfaces here, before Ray starts
    from search.runner import run_search

    result = run_search(spec, spec_text=args.spec.read_text(), name=args.name, num_cpus=args.num_cpus,
                        ray_address=args.address)
    print(f"inspect: mlflow ui --backend-store-uri {spec.tracking.uri or 'sqlite:///mlflow.db'}   |   "
          f"emule pareto {result.name}   |   emule export {result.name} --out exports/")
    return 0 if result.status == "complete" else 130


def cmd_pareto(args) -> int:
    from search.export import front_rows, load_search
    from search.tracking import Tracker

    record = load_search(Tracker(args.tracking_uri, args.experiment), args.name)
    rows = front_rows(record.front, record.spec.metrics)
    print(f"search {record.name}: {len(rows)} on the Pareto front, hypervolume {record.front.hypervolume:.4g} "
          f"(* = knee)")
    print(_table(rows))
    return 0


def cmd_export(args) -> int:
    from search.export import export
    from search.tracking import Tracker

    limits = {k: v for k, v in (("params", args.max_params), ("flops", args.max_flops)) if v is not None}
    paths = export(Tracker(args.tracking_uri, args.experiment), args.name, args.out, args.select, limits)
    if not paths:
        print(f"emule export: no front member matches --select {args.select} {limits or ''}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def cmd_train(args) -> int:
    from search.export import retrain

    out = args.out or args.config.with_suffix(".pt")
    result = retrain(args.config, out)
    print(f"saved {out}: {result['params']} parameters, val_accuracy {result['val_accuracy']:.4f}, "
          f"test_accuracy {result['test_accuracy']:.4f}")
    return 0


def cmd_datasets(args) -> int:
    from emule_models.data import DESCRIPTIONS, load_builtin

    rows = []
    for name in sorted(DESCRIPTIONS):
        d = load_builtin(name).describe()
        rows.append({"name": name, "classes": d["classes"], "train": d["train"], "val": d["val"], "test": d["test"],
                     "modalities": ", ".join(f"{k} {v}" for k, v in d["modalities"].items()),
                     "description": DESCRIPTIONS[name]})
    print(_table(rows))
    return 0


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(empty)"
    cols = list(rows[0])
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


COMMANDS = {"search": cmd_search, "pareto": cmd_pareto, "export": cmd_export, "train": cmd_train,
            "datasets": cmd_datasets}

if __name__ == "__main__":
    sys.exit(main())
