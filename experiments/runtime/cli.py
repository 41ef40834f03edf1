"""A frozen dataclass config as a command line: one flag per field, one error path.

Every field becomes ``--field-name`` with the field's type, default and help (``flag(...)``), so
an option shared by several experiments (declared once in ``experiments.runtime.options``) has the
same name, type, default and help in every script. Types: ``int``, ``float``, ``str``,
``str | None``, ``bool`` (a switch), and tuples of ``int``/``float``/``str`` (comma-separated).

Why a helper of our own rather than tyro or simple_parsing: the configs are flat frozen
dataclasses, the error contract is one line ``<prog>: error: ...`` with exit 2 (tyro prints
multi-line panels), and ``--resume`` needs to know which flags the user actually typed. Those
three needs are ~100 lines over argparse; a library would still need the last two written here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

BAD_CONFIG = 2  # exit status for a config that cannot run (argparse's own)


class ConfigError(ValueError):
    """A config that cannot run; the message is one line, meant for the user."""


def flag(
    default: Any,
    help: str,
    *,
    choices: Sequence[Any] | None = None,  # noqa: A002
    metavar: str | None = None,
    resumable: bool = False,
):
    """A config field with its command-line help.

    ``choices``: the valid values (for ``str`` fields; checked by argparse). ``resumable``: the
    field may differ on ``--resume`` from the run's own config (where it writes, how often it
    checkpoints); every other field shapes the numbers and must match.
    """
    meta = {"help": help, "choices": choices, "metavar": metavar, "resumable": resumable}
    if isinstance(default, list):
        raise TypeError("use a tuple default, not a list (configs are immutable)")
    return dataclasses.field(default=default, metadata=meta)


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _base_type(tp) -> tuple[type, bool]:
    """(type, optional) of a field annotation such as ``int``, ``str | None``."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union type {tp}")
        return args[0], True
    return tp, False


def _parse_scalar(kind: type, text: str, name: str):
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{flag_name(name)} expects {kind.__name__} values, got {text!r}"
        ) from None
    return text


def _converter(name: str, tp):
    kind, optional = _base_type(tp)
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]

        def parse_tuple(text: str):
            parts = [p.strip() for p in text.split(",")]
            if not text.strip() or any(not p for p in parts):
                raise argparse.ArgumentTypeError(
                    f"{flag_name(name)} expects comma-separated {item.__name__} values, "
                    f"got {text!r}"
                )
            return tuple(_parse_scalar(item, p, name) for p in parts)

        return parse_tuple
    if optional and kind is str:
        return lambda text: text
    return lambda text: _parse_scalar(kind, text, name)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is ONE line ``<prog>: error: ...`` (no usage block), exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        # "argument --x: --x expects ..." -> "--x expects ..."
        head, sep, rest = message.partition(": ")
        if sep and head.startswith("argument ") and rest.startswith(head[len("argument ") :]):
            message = rest
        fail(message, BAD_CONFIG, self.prog.split()[-1].rsplit(".", 1)[-1])


def fail(message: str, status: int, prog: str) -> typing.NoReturn:
    """Print ``prog: error: message`` on one line to stderr and exit with ``status``."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def build_parser(config_cls, prog: str, description: str, extra=()) -> argparse.ArgumentParser:
    """The parser of ``config_cls``; defaults are SUPPRESSed so only typed flags appear."""
    parser = _OneLineParser(
        prog=prog,
        description=description,
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        meta = field.metadata
        if "help" not in meta:
            continue
        tp = hints[field.name]
        kwargs: dict[str, Any] = {"help": meta["help"], "dest": field.name}
        if tp is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = _converter(field.name, tp)
            if meta.get("choices") is not None:
                kwargs["choices"] = meta["choices"]
            kwargs["metavar"] = meta.get("metavar") or field.name.upper()
        # The help shows the default although argparse itself only sees SUPPRESS.
        default = field.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        if default is not None and default is not False:
            kwargs["help"] = f"{meta['help']} (default: {shown})"
        parser.add_argument(flag_name(field.name), **kwargs)
    for args, kwargs in extra:
        parser.add_argument(*args, **kwargs)
    return parser


def resumable_fields(config_cls) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("resumable"))


def to_dict(cfg) -> dict[str, Any]:
    """A config as JSON-able values (tuples become lists)."""
    return {
        f.name: list(v) if isinstance(v := getattr(cfg, f.name), tuple) else v
        for f in dataclasses.fields(cfg)
    }


def from_dict(config_cls, data: dict[str, Any]):
    """Inverse of ``to_dict``; unknown keys are an error (a config from another experiment)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"config has unknown keys {unknown}")
    hints = typing.get_type_hints(config_cls)
    values = {}
    for name, value in data.items():
        kind, _ = _base_type(hints[name])
        values[name] = tuple(value) if typing.get_origin(kind) is tuple else value
    return config_cls(**values)
