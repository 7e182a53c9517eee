"""Pydantic option models as argparse flags, so every setting is defined once (in options.py).

Each field `some_name` becomes `--some-name`, with its description as help, Literal values as
choices, bools as --flag/--no-flag and lists as a flag that can be repeated or take several values. Flags default to "not given", so that only what the user
typed overrides the model's defaults.
"""

import argparse
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from sgm_export.errors import SgmError


def add_option_flags(parser: argparse.ArgumentParser, model: type[BaseModel], skip: tuple[str, ...] = ()) -> None:
    """Add one flag per field of `model`."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        annotation = without_none(field.annotation)
        help_text = f"{field.description} (default: {default_words(field.default)})"
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        if annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(annotation) is Literal:
            parser.add_argument(flag, choices=typing.get_args(annotation), **kwargs)
        elif words := literal_words(annotation):
            parser.add_argument(flag, type=number_or(words), metavar="N|" + "|".join(words), **kwargs)
        elif typing.get_origin(annotation) is list:
            (item,) = typing.get_args(annotation)
            choices = typing.get_args(item) if typing.get_origin(item) is Literal else None
            # extend: `--judge a --judge b` and `--judge a b` both give [a, b] (never "the last one wins")
            parser.add_argument(flag, action="extend", nargs="+", choices=choices, **kwargs)
        else:
            parser.add_argument(flag, type=annotation, metavar=name.split("_")[-1].upper(), **kwargs)


def default_words(default: Any) -> str:
    """A default as --help states it: `none` for None or an empty list, `on`/`off` for a switch,
    list items comma-separated (never Python's repr)."""
    if default is None or default == []:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, list):
        return ", ".join(map(str, default))
    return str(default)


def options_from_args(model: type[BaseModel], args: argparse.Namespace) -> Any:
    """Build the option model from the flags the user gave; invalid values are one-line errors."""
    given = {name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None}
    try:
        return model(**given)
    except ValidationError as error:
        first = error.errors()[0]
        if not first["loc"]:  # a check across several options names no single flag
            raise SgmError(first["msg"].removeprefix("Value error, "), "see `sgm-export --help` for what the options accept") from None
        flag = "--" + str(first["loc"][0]).replace("_", "-")
        raise SgmError(f"{flag}: {first['msg']}", f"see `sgm-export --help` for what {flag} accepts") from None


def literal_words(annotation: Any) -> tuple[str, ...]:
    """The words of a `number | Literal[...]` setting (`batch_size: int | "auto"`), else ()."""
    if not (isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union):
        return ()
    return tuple(word for arg in typing.get_args(annotation) if typing.get_origin(arg) is Literal for word in typing.get_args(arg))


def number_or(words: tuple[str, ...]):
    """An argparse type: one of `words` as it is, anything else as a number (validated later)."""

    def parse(value: str) -> str | float:
        if value in words:
            return value
        try:
            return float(value) if "." in value else int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or {' or '.join(words)}, got {value!r}") from None

    return parse


def without_none(annotation: Any) -> Any:
    """`X | None` -> `X` (optional settings take the flag type, and optional sections their model)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        remaining = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(remaining) == 1:
            return remaining[0]
    return annotation
