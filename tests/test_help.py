"""`--help` of every command: each positional and option says what it is, and a default is stated
once (the option models' "(default: X)" and argparse's %(default)s must never add up)."""

import argparse
import re
import subprocess
import sys

import pytest

from sgm_export.cli import build_parser
from sgm_export.cli.options import default_words
from sgm_export.options import EvalOptions, ScoreOptions

DEFAULT = re.compile(r"\bdefault\b", re.IGNORECASE)
UNSTATED_DEFAULTS = (None, False, [], argparse.SUPPRESS)  # nothing to say: not given, a switch left off, nothing repeated


def parsers() -> dict[str, argparse.ArgumentParser]:
    """The top-level parser and every subcommand's, by name."""
    top = build_parser()
    (commands,) = [action for action in top._actions if isinstance(action, argparse._SubParsersAction)]
    return {"sgm-export": top, **commands.choices}


def expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text as --help prints it (with %(default)s and the like filled in)."""
    return parser._get_formatter()._expand_help(action)


def described_actions():
    for name, parser in parsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            yield pytest.param(parser, action, id=f"{name} {'/'.join(action.option_strings) or action.dest}")


@pytest.mark.parametrize("parser, action", described_actions())
def test_every_positional_and_option_is_described_and_its_default_stated_once(parser, action):
    text = expanded_help(parser, action) if action.help else ""
    assert text.strip(), "no help text"
    stated = len(DEFAULT.findall(text))
    assert stated <= 1, f"the default is stated {stated} times: {text!r}"
    if not any(action.default is unstated or action.default == unstated for unstated in UNSTATED_DEFAULTS):
        assert stated == 1, f"the default {action.default!r} is not stated: {text!r}"


def test_option_defaults_are_the_option_models_in_plain_words():
    commands = parsers()
    helps = {
        (name, option): action.help for name in ("score", "eval") for action in commands[name]._actions for option in action.option_strings
    }
    assert helps[("score", "--pool")].endswith(f"(default: {ScoreOptions.model_fields['pool'].default})")
    assert helps[("eval", "--judge")].endswith("(default: profanity-check)")  # not Python's ['profanity-check']
    assert helps[("eval", "--neutral-extra")].endswith("(default: none)")
    assert helps[("eval", "--adversarial")].endswith("(default: on)") and EvalOptions.model_fields["adversarial"].default is True
    assert [default_words(value) for value in (None, [], False, ["a", "b"], 0.5)] == ["none", "none", "off", "a, b", "0.5"]


def test_shared_flags_take_their_defaults_and_choices_from_their_owners():
    from sgm_export.cli.flags import CHECKPOINT_FORMATS
    from sgm_export.options import VERIFY_TOLERANCE as DEFAULT_TOLERANCE
    from sgm_export.options import ExportOptions

    actions = {name: {a.dest: a for a in parser._actions} for name, parser in parsers().items()}
    assert actions["verify"]["tolerance"].default == DEFAULT_TOLERANCE
    assert set(actions["export"]["format"].choices) | {"onnx"} == set(ExportOptions.model_fields["formats"].annotation.__args__[0].__args__)
    assert actions["export"]["format"].choices == CHECKPOINT_FORMATS
    with_access = [name for name, dests in actions.items() if "allow_pickle" in dests]
    assert sorted(with_access) == ["collect", "eval", "score", "sweep", "verify"]
    for name in with_access:  # the same two flags, worded once in cli/flags.py
        assert actions[name]["allow_pickle"].help.startswith("allow .bin/.pt pickle checkpoints of ")
        assert actions[name]["trust_remote_code"].help.endswith("own remote code to run")


def test_building_the_parser_leaves_the_libraries_unimported():
    """The libraries read their quiet settings when first imported, after the parser is built."""
    code = "import sys; import sgm_export.cli as c; c.build_parser(); print(sorted({'huggingface_hub', 'transformers', 'torch'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
