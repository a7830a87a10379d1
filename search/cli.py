"""The ``emule`` command line. Errors in the user's input print one line and exit 2, with no traceback.

Each command imports what it needs when it runs, not at start-up: torch, Ray and MLflow take seconds to import,
which `emule datasets` or `emule status` should not pay.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from search.driver.crash import USER_ERRORS, SearchFailed
from search.driver.ray_session import start_timeout
from search.spec.results import FLOPS, SIZE, TEST_ACCURACY, TRAIN_SAMPLES
from search.spec.storage import DEFAULT_STORAGE

EXIT_USAGE = 2
EXIT_FAILED = 1  # a search that failed after it started (recorded FAILED in MLflow)


STARTS_RAY = ("search", "resume", "distill")  # the commands that may start a local Ray instance
MAX_THREADS = 4  # torch threads for training in this process, at most (see default_threads)
SPEC_HELP = "a search spec: a YAML file such as spaces/quickstart.yaml"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in STARTS_RAY:
            start_timeout()  # a bad EMULE_RAY_START_TIMEOUT is refused before any data, run or cluster
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SearchFailed as e:  # after its parent run existed: recorded FAILED, the traceback kept in a file
        print(f"emule {args.command}: {e}", file=sys.stderr)
        print(e.trace_line(), file=sys.stderr)
        return EXIT_USAGE if isinstance(e.error, USER_ERRORS) else EXIT_FAILED
    except USER_ERRORS as e:
        print(f"emule {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    """Every command and option, each with its help text."""
    parser = argparse.ArgumentParser(prog="emule", description="Search small, fast, data-frugal multimodal "
                                     "Transformers; inspect the Pareto front; export and retrain the best.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, cmd_search, help="run a search spec on this machine (local Ray, local MLflow store)")
    p.add_argument("spec", type=Path, help=SPEC_HELP)
    p.add_argument("--name", help="search name (default: the spec's name plus a timestamp)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs the local Ray instance may use")
    p.add_argument("--address", default=None, help="attach to a running Ray cluster instead (ray://... or HOST:PORT)")
    p.add_argument("--extend", metavar="NAME", default=None,
                   help="add the spec's trials to finished search NAME, learning from its candidates")
    p.add_argument("--dry-run", action="store_true", help="print what the search would cost (as `emule plan`) "
                   "and start nothing")
    _threads_arg(p, "the proxy models and distillation teachers trained here before the trials (trials use "
                 "search.cpus_per_trial)")
    _output_args(p)

    p = _command(sub, cmd_plan, help="what a search spec would cost - trials, sizes, FLOPs, time per trial - before "
                       "any compute; starts nothing")
    p.add_argument("spec", type=Path, help=SPEC_HELP)
    p.add_argument("--no-timing", action="store_true", help="skip the short timing of training steps")

    p = _command(sub, cmd_resume, help="continue a search whose driver stopped (killed, crashed, a stop signal)")
    _stored_search_args(p)
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs the local Ray instance may use")
    p.add_argument("--address", default=None, help="attach to a running Ray cluster instead (ray://... or HOST:PORT)")
    _threads_arg(p, "the proxy models and distillation teachers trained here before the trials")
    _output_args(p)

    p = _command(sub, cmd_sync, help="log to MLflow what a search kept while MLflow was unreachable")
    _stored_search_args(p)

    p = _command(sub, cmd_pareto, help="print a search's Pareto front")
    p.add_argument("name", help="search name, or a spec name for its newest search")
    _tracking_args(p)

    p = _command(sub, cmd_export, help="write front members as YAML configs that `emule train` retrains; with "
                       "their trained weights, also as ONNX files and as versions in MLflow's model registry")
    p.add_argument("name", help="search name (or a spec name for its newest search), or an exported candidate YAML")
    p.add_argument("--out", type=Path, default=Path("exports"),
                   help="folder for the YAMLs, one per candidate, named SEARCH-TRIAL.yaml (default: exports)")
    p.add_argument("--select", default="front", choices=["front", "knee", "budget"],
                   help="front: every member (default); knee: the balanced compromise; budget: the best by the "
                   "first objective within --max-params / --max-flops")
    p.add_argument("--max-params", type=float, help="with --select budget: most parameters accepted")
    p.add_argument("--max-flops", type=float, help="with --select budget: most FLOPs per sample accepted")
    p.add_argument("--format", default="yaml", choices=["yaml", "onnx"],
                   help="onnx: also an ONNX file beside each YAML, from the weights `emule train` saved beside it, "
                   "checked with ONNX Runtime (needs the deploy extra)")
    p.add_argument("--weights", type=Path, default=None,
                   help="trained weights for --format onnx / --register (default: the YAML's path with .pt); "
                   "one candidate only")
    p.add_argument("--register", metavar="MODEL", default=None,
                   help="also log each trained model to MLflow and register it as a new version of MODEL")
    _tracking_args(p)

    p = _command(sub, cmd_distill, help="a finished search's best candidate teaches its front members (or the "
                       "candidates of --space SPEC) in a new search, tagged with the first")
    p.add_argument("name", help="search name, or a spec name for its newest search")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the teacher's soft labels (default 0.5)")
    p.add_argument("--temperature", type=float, default=4.0, help="softmax temperature (default 4)")
    p.add_argument("--space", type=Path, default=None, help="a spec whose space holds the students instead of the "
                   "front members (same data)")
    p.add_argument("--trials", type=int, default=None, help="candidates (default: the front's size, or the "
                   "--space spec's trials)")
    p.add_argument("--ensemble", type=int, default=1, metavar="K", help="the K best candidates by validation "
                   "teach together, their logits averaged (default 1: the best alone)")
    p.add_argument("--cross-fit", type=int, default=1, metavar="K", help="each training row's soft label from one "
                   "of K teacher models that did not learn from it (K times the teacher models; default 1: from a "
                   "teacher that learned from it)")
    p.add_argument("--search-name", default=None, help="name of the new search (default: <spec>.distill-<time>)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs the local Ray instance may use")
    p.add_argument("--address", default=None, help="attach to a running Ray cluster instead")
    _threads_arg(p, "the teacher models trained here before the trials")
    _tracking_args(p)
    _output_args(p)

    p = _command(sub, cmd_data_curve, help="how much data a candidate needs: its learning curve on nested fractions "
                       "of the training rows (the search's folds and recipe), extrapolated to 2x and 4x the labels")
    p.add_argument("name", help="search name, or a spec name for its newest search")
    p.add_argument("--select", default="best", help="the candidate: best (by validation; default), knee, or a trial id")
    p.add_argument("--fractions", type=float, nargs="+", default=None, metavar="F",
                   help="fractions of each fold's training rows, in (0, 1]; 1 is always added (default: six from "
                   "0.1 to 1, search.delivery.data_curve.FRACTIONS)")
    p.add_argument("--seeds", type=int, default=None, help="shuffles of the rows per fraction (default 3)")
    p.add_argument("--dry-run", action="store_true", help="print what the curve would cost and train nothing")
    _threads_arg(p, "the trainings")
    _tracking_args(p)

    p = _command(sub, cmd_suggest_labels, help="which unlabelled rows (null labels) to label next: a candidate's "
                       "fold models rank them by uncertainty, coverage or both, into a Parquet of row ids and scores")
    p.add_argument("name", help="search name, or a spec name for its newest search")
    p.add_argument("--n", type=int, required=True, metavar="K", help="how many rows to suggest")
    p.add_argument("--select", default="best", help="the candidate: best (by validation; default), knee, or a trial id")
    p.add_argument("--strategy", default=None, help="margin (default): the two likeliest classes closest; entropy: "
                   "the most even class probabilities; kcenter: the rows farthest from the labelled ones in the "
                   "models' representation; mix: both at once (BADGE); see search/delivery/label_suggestions.py")
    p.add_argument("--out", type=Path, default=None, help="the Parquet file to write (default: "
                   "SEARCH.suggest-STRATEGY.parquet here)")
    _threads_arg(p, "the fold models' training")
    _tracking_args(p)

    p = _command(sub, cmd_train, help="retrain an exported config and save its weights")
    p.add_argument("config", type=Path, help="a candidate YAML written by `emule export`")
    p.add_argument("--out", type=Path, default=None, help="weights file (default: next to the config, .pt)")
    _threads_arg(p, "the training")

    _command(sub, cmd_datasets, help="list the built-in datasets")
    _job_parsers(sub)
    return parser


def _command(sub, run, **kwargs) -> argparse.ArgumentParser:
    """The subcommand that ``run`` (``cmd_<name>``) carries out: named, described and bound in one place."""
    p = sub.add_parser(run.__name__.removeprefix("cmd_").replace("_", "-"), **kwargs)
    p.set_defaults(run=run)
    return p


def _threads_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help=f"torch threads for {what} (default: the cores idle now - physical cores less the 1-minute "
                   f"load average - from 1 to {MAX_THREADS}: threads beyond the idle cores make training several "
                   "times slower on a busy machine)")


def default_threads() -> int:
    """Torch threads for training in this process: the physical cores it may run on less those busy now (the
    1-minute load average), from 1 to ``MAX_THREADS``. torch takes every core by default, and each training step
    then waits for its slowest thread: on a busy 2-core machine a small GunPoint candidate trained in 44-94 s on
    torch's two threads, 14-21 s on one."""
    import psutil

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cores = min(psutil.cpu_count(logical=False) or usable, usable)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(MAX_THREADS, cores - round(busy)))


def _use_threads(args) -> int:
    """Set torch's threads for the training this command does itself (``--threads``, else ``default_threads``)."""
    import torch

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    return threads


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} not accepted; accepted: an integer >= 1")
    return value


def _stored_search_args(p: argparse.ArgumentParser) -> None:
    """Which stored search a command continues: its name and where its experiment state lives."""
    p.add_argument("name", help="search name, or a spec name for its newest search")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help=f"the spec's search.storage: a folder or a URI, e.g. s3://bucket/runs ({DEFAULT_STORAGE})")


def _output_args(p: argparse.ArgumentParser) -> None:
    from search.driver.progress import STATUS_EVERY

    p.add_argument("--quiet", "-q", action="store_true", help="only the start and end of the search and warnings: "
                   "no line per ended trial, no status lines")
    p.add_argument("--status-every", type=_seconds, default=STATUS_EVERY, metavar="SECONDS",
                   help=f"at most one status line on the running trials per SECONDS (default {STATUS_EVERY:g}; "
                   "0: none)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} not accepted; accepted: seconds >= 0")
    return value


DEFAULT_EXPERIMENT = "emule"


def _tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, then "
                   "$EMULE_TRACKING_URI, then sqlite:///<current folder>/mlflow.db)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment the search was logged to "
                   f"(the spec's tracking.experiment; default {DEFAULT_EXPERIMENT})")


def _store_args(uri: str | None, experiment: str | None) -> str:
    """The options that make ``emule pareto`` / ``export`` open a search's store and experiment, where their
    defaults here would not (a spec's own ``tracking.uri``, say); none for the default store or one named by
    MLFLOW_TRACKING_URI / EMULE_TRACKING_URI."""
    from shlex import quote

    from search.record.tracking import redact, resolve_uri

    args = f" --tracking-uri {quote(redact(uri))}" if uri and uri != resolve_uri(None) else ""
    return args + (f" --experiment {quote(experiment)}" if experiment and experiment != DEFAULT_EXPERIMENT else "")


def cmd_search(args) -> int:
    from search.driver.checks import load_spec

    if args.dry_run:
        return cmd_plan(args)
    spec = load_spec(args.spec)  # every spec error surfaces here, before Ray starts
    from search.record.tracking import Tracker

    # so does an unreachable MLflow, before the driver (and Ray with it) is imported
    Tracker(spec.tracking.uri, spec.tracking.experiment)
    _use_threads(args)
    from search.delivery.data_curve import after_search
    from search.driver.runner import run_search

    # The driver's own result, not the API's `Search` read back from MLflow: a search that finished while MLflow
    # was down still ends with its summary and exit status. Today's sys.stdout, not the one bound when run_search
    # was defined: a caller (a test running the CLI in-process) may have replaced it since.
    result = run_search(spec, spec_text=args.spec.read_text(), name=args.name, out=sys.stdout, num_cpus=args.num_cpus,
                        ray_address=args.address, extend=args.extend, status_every=args.status_every,
                        quiet=args.quiet)
    if spec.data_curve is not None and result.status == "complete":
        after_search(spec, result.name, sys.stdout)
    return _finished(result)


def cmd_plan(args) -> int:
    from search.driver.checks import load_spec
    from search.driver.plan import plan_lines

    for line in plan_lines(load_spec(args.spec), calibrate_time=not getattr(args, "no_timing", False)):
        print(line, flush=True)
    return 0


def cmd_resume(args) -> int:
    from search.driver.resume import resume_search

    _use_threads(args)
    result = resume_search(args.name, storage=args.storage, out=sys.stdout, num_cpus=args.num_cpus,
                           ray_address=args.address, status_every=args.status_every, quiet=args.quiet)
    return _finished(result)


def cmd_sync(args) -> int:
    from search.driver.resume import sync_search

    sync_search(args.name, storage=args.storage)
    return 0


def _finished(result) -> int:
    if result.status == "complete":  # the search's own lines ended with how to open it in MLflow
        store = _store_args(result.tracking_uri, result.experiment_name)
        print(f"next: emule pareto {result.name}{store}   |   emule export {result.name}{store} --out exports/")
        return 0
    import signal

    return 128 + int(getattr(signal, result.stop_reason or "SIGINT"))  # 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP


def cmd_pareto(args) -> int:
    from search.delivery.export import front_rows
    from search.record.searches import load_search
    from search.record.tracking import Tracker

    tracker = Tracker(args.tracking_uri, args.experiment)
    record = load_search(tracker, args.name)
    rows = front_rows(record.front, record.spec.metrics)
    print(f"search {record.name}: {len(rows)} on the Pareto front, hypervolume {record.front.hypervolume:.4g} "
          f"(* = knee)")
    print(_table(rows))
    from search.front import yardstick
    from search.trial.validation import describe

    best = yardstick.best_by_validation(record.front.members + record.front.others)
    for line in yardstick.lines(best, tracker.baselines(record.parent_id),
                                describe(record.spec.data)):
        print(line)
    from search.front.summary import ui_lines
    from search.record.tracking import redact
    from search.spec.space import searched

    with contextlib.suppress(Exception):  # a search from before views has none; a reader may not write
        tracker.save_front_view(record.parent_id, record.spec.objectives, searched(record.spec))
    for line in ui_lines(redact(tracker.uri), tracker.experiment_id, record.parent_id, record.spec.objectives):
        print(line)
    return 0


def cmd_export(args) -> int:
    from search.record.tracking import Tracker

    deploy = args.format == "onnx" or args.register is not None
    if deploy:  # refused before MLflow is read or anything is computed
        from search.delivery import deploy as dep

        if args.format == "onnx":
            try:
                dep.require_onnx()
            except ImportError as e:
                print(f"emule export: {e}", file=sys.stderr)
                return EXIT_USAGE
        if args.register is not None:
            dep.check_model_name(args.register)
    elif args.weights is not None:
        raise ValueError("--weights: only with --format onnx or --register MODEL")
    tracker = None
    if Path(args.name).suffix in (".yaml", ".yml"):  # one exported candidate, as `emule train` read it
        if not deploy:
            raise ValueError(f"name: {args.name} is already an exported YAML; accepted with a YAML: --format onnx "
                             "and/or --register MODEL")
        if not Path(args.name).is_file():
            raise FileNotFoundError(f"name: {args.name} does not exist; accepted: a search name or an exported "
                                    "candidate YAML")
        paths = [Path(args.name)]
    else:
        from search.delivery.export import select
        from search.record.searches import candidate_path, write_candidates
        from search.trial.candidate import Candidate

        limits = {k: v for k, v in ((SIZE, args.max_params), (FLOPS, args.max_flops)) if v is not None}
        tracker = Tracker(args.tracking_uri, args.experiment)
        record, chosen = select(tracker, args.name, args.select, limits)
        if not chosen:
            print(f"emule export: no front member matches --select {args.select} {limits or ''}", file=sys.stderr)
            return 1
        if deploy:  # every candidate is checked before anything is written
            if args.weights is not None and len(chosen) > 1:
                raise ValueError(f"--weights: one file for {len(chosen)} candidates; accepted with --weights: one "
                                 "candidate (--select knee or budget, or an exported YAML)")
            write_yaml = _yaml_command(args)
            for r in chosen:
                path = candidate_path(args.out, record, r)
                dep.check_trained(Candidate.from_dict(tracker.candidate(r.run_id)), path,
                                  args.weights or path.with_suffix(".pt"), args.format == "onnx", write_yaml)
        paths = write_candidates(tracker, record, chosen, args.out)
    for path in paths:
        print(path)
    if not deploy:
        return 0
    trained = [dep.locate(p, args.weights, onnx=args.format == "onnx") for p in paths]
    if args.register is not None and tracker is None:
        tracker = Tracker(args.tracking_uri, args.experiment)
    for t in trained:
        model = t.model()
        dataset = dep.candidate_dataset(t.candidate)
        if args.format == "onnx":
            check = dep.to_onnx(model, t.config.with_suffix(".onnx"), dep.check_rows(dataset),
                                dep.masked_series(dataset), classes=list(dataset.classes))
            print(check.line())
        if args.register is not None:
            reg = dep.register(tracker, t, args.register, model=model, dataset=dataset)
            print(f"registered {reg.uri} (run {reg.run_id}): one float32 row of {reg.width} values per sample in, "
                  f"logits out; load with mlflow.pyfunc.load_model('{reg.uri}')")
    return 0


def _yaml_command(args) -> str:
    """The `emule export` command that writes the YAMLs this one selects, and nothing else."""
    limits = "".join(f" {flag} {v:g}" for flag, v in (("--max-params", args.max_params),
                                                        ("--max-flops", args.max_flops)) if v is not None)
    select = f" --select {args.select}" if args.select != "front" else ""
    from search.record.tracking import redact

    where = "".join(f" {flag} {v}" for flag, v in (("--tracking-uri", args.tracking_uri and redact(args.tracking_uri)),
                                                   ("--experiment", args.experiment)) if v not in (None, "emule"))
    return f"emule export {args.name} --out {args.out}{select}{limits}{where}"


def cmd_distill(args) -> int:
    from search.delivery.distill import distill_spec
    from search.record.tracking import Tracker

    tracker = Tracker(args.tracking_uri, args.experiment)
    # a bad --alpha is refused as the spec field it becomes (distill.alpha), before Ray starts
    spec, text = distill_spec(tracker, args.experiment, args.name, args.alpha, args.temperature, args.space,
                              args.trials, args.ensemble, cross_fit=args.cross_fit)
    from search.driver.runner import run_search

    _use_threads(args)
    # today's sys.stdout, not the one bound when run_search was defined: a caller may have replaced it since
    result = run_search(spec, spec_text=text, name=args.search_name, out=sys.stdout, num_cpus=args.num_cpus,
                        ray_address=args.address, status_every=args.status_every, quiet=args.quiet)
    return _finished(result)


def cmd_data_curve(args) -> int:
    from search.delivery import data_curve
    from search.record.tracking import Tracker

    fractions = data_curve.FRACTIONS if args.fractions is None else args.fractions
    seeds = data_curve.SEEDS if args.seeds is None else args.seeds
    data_curve.check_arguments(fractions, seeds)  # before the store or the data is touched
    tracker = Tracker(args.tracking_uri, args.experiment)
    print(f"torch threads: {_use_threads(args)}")
    data_curve.run(tracker, args.name, args.select, fractions, seeds, dry_run=args.dry_run)
    return 0


def cmd_suggest_labels(args) -> int:
    from search.delivery import label_suggestions
    from search.record.tracking import Tracker

    strategy = args.strategy or label_suggestions.DEFAULT_STRATEGY
    label_suggestions.check_arguments(args.n, strategy, args.out)  # before the store or the data is touched
    tracker = Tracker(args.tracking_uri, args.experiment)
    print(f"torch threads: {_use_threads(args)}")
    label_suggestions.run(tracker, args.name, args.n, args.select, strategy, args.out)
    return 0


def cmd_train(args) -> int:
    from search.delivery.export import retrain

    out = args.out or args.config.with_suffix(".pt")
    print(f"torch threads: {_use_threads(args)}")
    result = retrain(args.config, out)
    print(f"saved {out}: {result[SIZE]} parameters, fit on {result[TRAIN_SAMPLES]} training rows, "
          f"test_accuracy {result[TEST_ACCURACY]:.4f}")
    return 0


def cmd_datasets(args) -> int:
    from emule_models.catalogue import CATALOGUE  # plain data: no torch, no decoding

    rows = [{"name": d.name, "classes": d.classes, "train": d.train, "val": d.val, "test": d.test,
             "modalities": ", ".join(f"{k} {v}" for k, v in d.modalities.items()), "description": d.description}
            for d in CATALOGUE.values()]
    print(_table(rows))
    print("A built-in is named in a spec as data: {name: NAME}; series-only ones take a derived image view with "
          "view: gaf | spectrogram (a re-encoding of the series: no new information).")
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


def _job_parsers(sub) -> None:
    """submit / status / logs / stop: a search as a job on a Ray cluster (the Ray Jobs API; see cluster/README.md)."""
    address = {"default": None, "help": "the head's dashboard, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, "
               "then $RAY_ADDRESS)"}
    p = _command(sub, cmd_submit, help="run a search spec on a Ray cluster as a job; prints the job id")
    p.add_argument("spec", type=Path, help=SPEC_HELP)
    p.add_argument("--address", **address)
    p.add_argument("--name", help="search name (default: the spec's name plus a timestamp)")
    p.add_argument("--tracking-uri", default=None, help="override tracking.uri: an MLflow server the head reaches")
    p.add_argument("--storage", default=None, help="override search.storage: s3://..., gs://... or a shared path")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for the job (credentials ...); repeatable")
    p.add_argument("--job-id", default=None, help="submission id (default: one Ray makes up)")
    p.add_argument("--python", default="python", help="the interpreter on the cluster (default: python)")
    p.add_argument("--follow", action="store_true", help="then print the job's output until it ends")
    _output_args(p)

    p = _command(sub, cmd_status, help="the state of a submitted search")
    p.add_argument("job_id", help="the id `emule submit` printed")
    p.add_argument("--address", **address)
    p.add_argument("--wait", action="store_true", help="wait until the job ends; exit 0 only if it succeeded")
    p.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")

    p = _command(sub, cmd_logs, help="the output of a submitted search")
    p.add_argument("job_id", help="the id `emule submit` printed")
    p.add_argument("--address", **address)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")

    p = _command(sub, cmd_stop, help="stop a submitted search: SIGTERM to its driver, which saves its state and "
                       "closes its MLflow runs (`emule resume` continues it); killed after the job's grace period")
    p.add_argument("job_id", help="the id `emule submit` printed")
    p.add_argument("--address", **address)


def cmd_submit(args) -> int:
    from search.delivery import jobs

    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env: {item!r} - accepted: KEY=VALUE")
        env[key] = value
    sub = jobs.submit(args.spec, args.address, name=args.name, tracking_uri=args.tracking_uri, storage=args.storage,
                      env=env, job_id=args.job_id, python=args.python,
                      output=["--quiet"] * args.quiet + ["--status-every", f"{args.status_every:g}"])
    print(sub.job_id)
    print(f"search {sub.search} submitted to {sub.address}; MLflow: {sub.tracking_uri}; storage: {sub.storage}\n"
          f"follow: emule logs {sub.job_id} --follow   |   emule status {sub.job_id}   |   emule stop {sub.job_id}",
          file=sys.stderr)
    if not args.follow:
        return 0
    jobs.logs(sub.job_id, args.address, follow=True)
    return _job_exit(jobs.status(sub.job_id, args.address))


def cmd_status(args) -> int:
    from search.delivery import jobs

    try:
        state = jobs.wait(args.job_id, args.address, args.timeout) if args.wait else jobs.status(args.job_id,
                                                                                                  args.address)
    except TimeoutError as e:
        print(f"emule status: {e}", file=sys.stderr)
        return 1
    took = f", {state.end - state.start:.0f}s" if state.start and state.end else ""
    print(f"{state.job_id} {state.status}{took} search={state.search or '?'} {state.message}".rstrip())
    return _job_exit(state) if args.wait else 0


def cmd_logs(args) -> int:
    from search.delivery import jobs

    jobs.logs(args.job_id, args.address, follow=args.follow)
    return _job_exit(jobs.status(args.job_id, args.address)) if args.follow else 0


def cmd_stop(args) -> int:
    from search.delivery import jobs

    if jobs.stop(args.job_id, args.address):
        print(f"stop requested for {args.job_id}")
    else:
        print(f"{args.job_id} had already ended ({jobs.status(args.job_id, args.address).status})")
    return 0


def _job_exit(state) -> int:
    return 0 if state.status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
