"""The command line as a user meets it: help for every option, a fast `emule datasets`, the torch threads of the
training a command does itself, and Ray's own hints kept out of a search's output."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

import pytest

from search import cli


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_of_every_command_has_help():
    parser = cli.build_parser()
    commands = subcommands(parser)
    assert {"search", "plan", "resume", "sync", "pareto", "export", "distill", "train", "datasets", "submit",
            "status", "logs", "stop"} <= set(commands)
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, p in commands.items()
               for a in p._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, f"options without help text: {missing}"
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert all(choice.help for choice in sub._choices_actions)  # each command's line in `emule --help`


def test_export_help_explains_out_and_select(capsys):
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "folder for the YAMLs" in text and "knee: the balanced compromise" in text


def test_datasets_lists_the_builtins_without_torch_or_decoding():
    """A fresh process: five names, and neither torch nor the package that bundles the data imported."""
    code = ("import sys, time; t = time.perf_counter(); from search.cli import main; rc = main(['datasets']); "
            "print(sorted(m for m in ('torch', 'sktime', 'ray', 'mlflow', 'pyarrow') if m in sys.modules), "
            "file=sys.stderr); sys.exit(rc)")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "[]"
    names = [line.split()[0] for line in proc.stdout.splitlines()[1:6]]
    assert names == ["osuleaf", "plaid", "basicmotions", "gunpoint", "italypowerdemand"]
    assert "6        159    41   242" in proc.stdout.splitlines()[1]
    assert took < 30  # about 0.1 s here; the bound only catches a return of the heavy imports on a loaded machine


@pytest.mark.parametrize("physical, affinity, load, expected", [
    (2, 2, 0.1, 2), (2, 2, 1.2, 1), (2, 2, 6.0, 1), (16, 16, 0.0, 4), (16, 16, 13.4, 3), (8, 2, 0.0, 2),
    (None, 3, 0.0, 3)])
def test_default_threads_are_the_idle_cores_from_1_to_4(monkeypatch, physical, affinity, load, expected):
    import psutil

    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: physical if not logical else 2 * (physical or 2))
    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda pid: set(range(affinity)))
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (load, load, load))
    assert cli.default_threads() == expected


def test_threads_flag_sets_torchs_threads_and_refuses_nonsense(capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert cli._use_threads(argparse.Namespace(threads=1)) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    for command in ("train", "search", "resume", "distill"):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args([command, "x", "--threads", "0"])
        assert "--threads: '0' not accepted; accepted: an integer >= 1" in capsys.readouterr().err
    assert cli.build_parser().parse_args(["train", "x.yaml", "--threads", "3"]).threads == 3


class Kept(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("logger, dropped", [
    ("ray.tune.tune", "Experiment has been interrupted, but the most recent state was saved.\nResume experiment with: "
                      'Tuner.restore(path="/tmp/x", trainable=...)'),
    ("ray._private.authentication.authentication_token_setup",
     "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out. For more "
     "information, see https://docs.ray.io/en/latest/ray-security/token-auth.html")])
def test_rays_hints_are_dropped_and_other_warnings_kept(logger, dropped):
    """Tune's "Resume experiment with: Tuner.restore(...)" (beside EMuLe's own `emule resume NAME`) and Ray's
    token-authentication notice of every local start: a search's environment filters those lines, only those,
    out of the loggers that print them (Ray's loggers do not propagate: the test's handler sits on the logger)."""
    from search.driver.runner import set_up_environment

    set_up_environment()
    set_up_environment()  # once is enough: no second filter
    log = logging.getLogger(logger)
    assert len([f for f in log.filters if type(f).__name__ == "DropLines"]) == 1
    kept = Kept()
    log.addHandler(kept)
    try:
        log.warning(dropped)
        log.warning("something else went wrong")
    finally:
        log.removeHandler(kept)
    assert kept.messages == ["something else went wrong"]
