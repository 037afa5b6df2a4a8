"""The command line's surface: a help line and the default on every option, the common flags
before or after the command, defaults taken from (or agreeing with) the library's dataclasses,
info --json, and the runtime options the inference commands build."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from typing import Any

import pytest

from squeezebert import cli
from squeezebert.runtime import BACKENDS, PRECISIONS, RuntimeOptions


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_is_listed_and_built_by_its_own_function() -> None:
    names = set(_commands())
    assert names == {f.__name__.removeprefix("add_").removesuffix("_parser") for f in cli.COMMANDS}
    for name in names:
        assert callable(getattr(cli, f"cmd_{name}"))


def test_every_option_of_every_command_has_a_help_line() -> None:
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, p in _commands().items()
        for action in p._actions
        if not (action.help or "").strip()
    ]
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_lists_every_default(name: str, capsys: pytest.CaptureFixture) -> None:
    p = _commands()[name]
    formatter = p._get_formatter()
    for action in p._actions:
        if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
            continue
        assert str(action.default) in formatter._expand_help(action), (name, action.option_strings)
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # unwrapped
    shown = [a for a in p._actions if a.option_strings and a.default not in (None, False, argparse.SUPPRESS)]
    for action in shown:
        assert str(action.default) in out, (name, action.option_strings)
    if name == "serve":
        assert "(default: 32)" in out  # --max-batch-size, from ServeConfig


def test_verbose_and_quiet_work_before_and_after_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, bool, bool]] = []

    def handler(args: argparse.Namespace) -> int:
        seen.append((args.verbose, args.quiet, args.debug))
        return 0

    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    monkeypatch.setattr(cli, "cmd_info", handler)
    for argv, want in (
        (["info", "tiny"], (False, False, False)),
        (["-v", "info", "tiny"], (True, False, False)),
        (["info", "tiny", "-v"], (True, False, False)),
        (["info", "-q", "tiny"], (False, True, False)),
        (["-q", "info", "tiny", "--debug"], (False, True, True)),
    ):
        assert cli.main(argv) == 0
        assert seen.pop() == want, argv
    with pytest.raises(SystemExit):
        cli.main(["info", "tiny", "-v", "-q"])


def test_runtime_flags_take_their_names_and_defaults_from_runtime_options() -> None:
    defaults = RuntimeOptions()
    for name in ("predict", "serve", "batch"):
        p = _commands()[name]
        actions = {a.dest: a for a in p._actions}
        assert tuple(actions["backend"].choices) == BACKENDS and tuple(actions["precision"].choices) == PRECISIONS
        args = p.parse_args(["model", *(["--input", "x", "--output", "y.jsonl"] if name == "batch" else [])])
        assert cli._runtime_options(args) == dataclasses.replace(defaults, num_threads=None)
    argv = ["m", "--backend", "onnx", "--max-length", "64", "--no-normalize", "--static-shapes", "0"]
    args = _commands()["predict"].parse_args(argv)
    assert cli._runtime_options(args) == RuntimeOptions(backend="onnx", max_length=64, normalize=False, static_shapes=0)


def test_serve_flags_default_to_serve_config() -> None:
    from squeezebert.serve import ServeConfig

    args = _commands()["serve"].parse_args(["model"])
    for field in dataclasses.fields(ServeConfig):
        if hasattr(args, field.name):
            assert getattr(args, field.name) == field.default, field.name


def test_training_flags_agree_with_train_config() -> None:
    # TrainConfig's module imports torch, which the CLI must not import to build its parser
    # (predict and serve run where torch is not installed): its defaults are restated, checked here.
    from squeezebert.train import TrainConfig

    config = cli._train_config(_commands()["finetune"].parse_args(["--model", "m", "--out", "o"]))
    assert config == TrainConfig()


def test_squeeze_flags_agree_with_the_squeeze_api_defaults() -> None:
    # restated in the parser for the same reason as TrainConfig's (torch-free CLI), checked here
    from squeezebert.distill import DistillConfig
    from squeezebert.squeeze import default_train_config

    args = _commands()["squeeze"].parse_args(["--teacher", "t", "--train", "x.csv", "--out", "o"])
    assert args.lr is None  # resolved by cmd_squeeze from the student: test_squeeze_learning_rate_follows_the_student
    assert args.int8 is None  # squeeze's own default: torch int8 where oneDNN runs it
    for flag, value in (("--int8", True), ("--no-int8", False)):
        assert _commands()["squeeze"].parse_args(["--teacher", "t", "--train", "x", "--out", "o", flag]).int8 is value
    args.lr = default_train_config().lr
    assert cli._train_config(args) == default_train_config()
    defaults = DistillConfig()
    fields = ["alpha", "temperature", "hidden_weight", "attention_weight", "augment", "augment_words"]
    for field in [*fields, "teacher_precision"]:
        assert getattr(args, field) == getattr(defaults, field), field
    from squeezebert.distill import TEACHER_PRECISIONS

    action = next(a for a in _commands()["squeeze"]._actions if a.dest == "teacher_precision")
    assert tuple(action.choices) == TEACHER_PRECISIONS
    import inspect

    from squeezebert.budget import BUDGET_RECIPES
    from squeezebert.squeeze import squeeze

    action = next(a for a in _commands()["squeeze"]._actions if a.dest == "budget_recipe")
    assert tuple(action.choices) == BUDGET_RECIPES
    assert args.budget_recipe == inspect.signature(squeeze).parameters["budget_recipe"].default


def test_info_json_prints_one_object(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["info", "tiny", "--json"]) == 0
    record: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert record["format"] == "preset" and record["num_hidden_layers"] == 2
    assert record["parameters"] > 0 and record["flops_seq128"] > 0
    assert set(record["groups"]) == {"query", "key", "value", "post_attention", "intermediate", "output"}


@pytest.mark.parametrize(
    ("flags", "want"),
    [
        ([], 1e-4),  # the low-rank surgery student
        (["--construction", "grouped"], 1e-4),
        (["--speedup", "3"], 3e-4),  # a budget always prunes
        (["--latency-budget", "2.5"], 3e-4),
        (["--construction", "pruned", "--heads", "2"], 3e-4),
        (["--speedup", "3", "--lr", "5e-5"], 5e-5),  # the user's own rate wins
    ],
)
def test_squeeze_learning_rate_follows_the_student(
    flags: list[str], want: float, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import squeezebert.squeeze as squeeze_module

    seen: dict[str, Any] = {}

    def fake_squeeze(teacher: str, out: str, source: Any, **kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        (tmp_path / "report.md").write_text("report\n")
        return {"ok": True}

    monkeypatch.setattr(squeeze_module, "squeeze", fake_squeeze)
    argv = ["squeeze", "--teacher", "t", "--train", "x.csv", "--dev", "d.csv", "--out", str(tmp_path), *flags]
    assert cli.main(argv) == 0
    assert seen["config"].lr == want


def test_squeeze_api_learning_rate_follows_the_student(monkeypatch: pytest.MonkeyPatch) -> None:
    import squeezebert.squeeze as squeeze_module
    from squeezebert.data import TaskSource
    from squeezebert.surgery import StudentSpec

    seen: list[float] = []
    monkeypatch.setattr(squeeze_module, "_squeeze", lambda *args: seen.append(args[6].lr) or {})
    source = TaskSource(train_file="x.csv", dev_file="d.csv")
    squeeze_module.squeeze("t", "o", source)
    squeeze_module.squeeze("t", "o", source, speedup=3)
    squeeze_module.squeeze("t", "o", source, spec=StudentSpec.from_construction("pruned", heads=2))
    assert seen == [squeeze_module.DEFAULT_LR, squeeze_module.PRUNED_LR, squeeze_module.PRUNED_LR]
