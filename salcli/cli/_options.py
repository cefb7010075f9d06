"""The options tables as command-line parameters: each command's Typer signature is made
from the fields of its tables (``salcli.options``: flags, help, defaults), so an option is
declared once and the command line, the API and the docs read the same table."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

import typer


def cli_params(*tables: type, exclude: Sequence[str] = ()) -> list[inspect.Parameter]:
    """Typer keyword parameters for every option of ``tables`` that has CLI flags, but
    those named in ``exclude`` (a command that takes part of a table); an option two
    tables declare is the first one's."""
    params = []
    seen = set(exclude)
    for cls in tables:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            meta = f.metadata
            if not meta.get("flags") or f.name in seen:
                continue
            seen.add(f.name)
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = ...  # required
            annotation = hints[f.name]
            if "cli_type" in meta:  # typed as text on the command line, parsed by the table
                annotation = meta["cli_type"] if default is not None else meta["cli_type"] | None
                if "cli_default" in meta:
                    default = meta["cli_default"]
                elif isinstance(default, tuple):
                    default = ",".join(map(str, default))
            opt = typer.Option(default, *meta["flags"], help=meta["help"], **meta["typer"])
            params.append(
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=annotation
                )  # fmt: skip
            )
    return params


def with_options(
    command: Callable[..., Any],
    own: Sequence[inspect.Parameter],
    *tables: type,
    exclude: Sequence[str] = (),
) -> Callable[..., Any]:
    """``command(**values)`` presented to Typer with the parameters ``own`` followed by
    every CLI option of ``tables`` (but ``exclude``): the option table is the command's
    signature."""
    params = [*own, *cli_params(*tables, exclude=exclude)]

    def wrapper(**values: Any) -> Any:
        return command(**values)

    wrapper.__name__ = command.__name__
    wrapper.__doc__ = command.__doc__
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
