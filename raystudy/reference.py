"""The configuration and command-line references, generated from the code itself.

``config_markdown()`` walks ``StudyConfig`` (every key's type, default and description) and
``cli_markdown()`` walks ``raystudy.cli.build_parser()`` (every command's usage and options),
so the pages cannot drift from what the installed raystudy accepts. The docs site calls both
from a build hook; ``python -m raystudy.reference OUTDIR`` writes them as OUTDIR/config.md and
OUTDIR/cli.md."""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from .errors import UserError, one_line

__all__ = ["cli_markdown", "config_markdown", "main"]

# A fixed width for argparse's usage lines: the terminal's would make the pages depend on
# the window they were built in.
WIDTH = 100


class DocsError(UserError):
    """The reference pages cannot be written where asked."""


# ---------------------------------------------------------------------------------------------
# Markdown pieces


def _inline(text: str, table: bool = False) -> str:
    """Prose as Markdown: whitespace folded; outside `code spans` the characters Markdown would
    read as markup are escaped; in a table cell every | is, or it would end the cell."""
    text, out, at = " ".join(str(text).split()), [], 0
    for span in [*re.finditer(r"(`+).+?(?<!`)\1(?!`)", text), None]:
        prose = text[at:span.start() if span else len(text)]
        out.append(re.sub(r"([\\*_])", r"\\\1", prose).replace("<", "&lt;"))
        if span:
            out.append(span.group())
            at = span.end()
    return "".join(x.replace("|", r"\|") for x in out) if table else "".join(out)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _code(text: str) -> str:
    """A code span that holds any text (a longer fence where the text has backticks)."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# ---------------------------------------------------------------------------------------------
# The configuration


def _type_name(tp) -> str:
    """A type as a config's author writes its values (YAML words: list, null)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None) or tp is None:
        return "null"
    if tp is typing.Any:
        return "any"
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin in (tuple, list, set, frozenset):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return f"[{', '.join(_type_name(a) for a in args)}]" if args else "list"
        return f"list[{_type_name(args[0])}]" if args else "list"
    if origin is dict:
        return f"dict[{_type_name(args[0])}, {_type_name(args[1])}]" if args else "dict"
    return getattr(tp, "__name__", str(tp))


def _section_class(field) -> type[BaseModel] | None:
    tp = field.annotation
    return tp if inspect.isclass(tp) and issubclass(tp, BaseModel) else None


def _default(values: dict, name: str) -> str:
    return _code(json.dumps(values.get(name)))


def _doc(cls: type[BaseModel]) -> str:
    return " ".join((inspect.getdoc(cls) if cls.__doc__ else "").split())


def _sections(cls: type[BaseModel], values: dict, prefix: str = "", level: int = 2) -> list[str]:
    """The Markdown sections of ``cls``: a table of its plain keys (dotted under ``prefix``; at the
    top, "Top-level keys"), then one section per nested section, recursively, a heading level
    deeper each time; ``values`` is the default instance's JSON data at ``prefix``."""
    plain = {n: f for n, f in cls.model_fields.items() if _section_class(f) is None}
    nested = {n: f for n, f in cls.model_fields.items() if _section_class(f) is not None}
    rows = [[_code(prefix + n), _inline(_type_name(f.annotation), table=True), _default(values, n),
             _inline(f.description or "", table=True)] for n, f in plain.items()]
    table = _table(["key", "type", "default", "description"], rows) if rows else ""
    if prefix:
        doc = _doc(cls)
        out = ["\n\n".join(x for x in (f"{'#' * level} {_code(prefix[:-1])}", _inline(doc) if doc else "", table)
                            if x)]
    else:
        out = [f"{'#' * level} Top-level keys\n\n{table}"] if table else []
    for n, f in nested.items():
        out += _sections(_section_class(f), values.get(n) or {}, f"{prefix}{n}.", level + 1 if prefix else level)
    return out


def config_markdown() -> str:
    """The configuration reference: every key of ``StudyConfig``, one table per section, with its
    type, its default (as JSON, which is also YAML) and its description."""
    from .config import StudyConfig

    intro = ("A study is one YAML file of the sections below; every key is optional and falls back to "
             "the default shown. On the command line `--set section.key=value` overrides one key (the "
             "value in YAML syntax, e.g. `--set 'ks=[2, 16]'`); an unknown key or a bad value stops "
             "the run with one line naming it. The resolved config is saved beside the results as "
             "`DIR/config.yaml`.")
    body = _sections(StudyConfig, StudyConfig().to_dict())
    return "\n\n".join(["# Configuration reference", intro, *body]) + "\n"


# ---------------------------------------------------------------------------------------------
# The command line


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return parser.formatter_class(prog=parser.prog, width=WIDTH)


def _machine_free(text: str) -> str:
    # Help texts may quote this machine's interpreter (a default); the pages must not depend on
    # the machine that built them.
    return text.replace(sys.executable, "the current interpreter") if sys.executable else text


def _prose(text: str | None, raw: bool) -> str:
    """A description or epilog: folded into one paragraph, as argparse does, unless the parser
    keeps its line breaks (a Raw* formatter): then each blank-line-separated block is a
    paragraph, and indented lines (examples) a code block."""
    if not text:
        return ""
    text = _machine_free(text)
    if not raw:
        return _inline(text)
    out = []
    for block in re.split(r"\n\s*\n", text.strip("\n")):
        runs: list[tuple[bool, list[str]]] = []
        for line in block.splitlines():
            indented = line[:1].isspace()
            if runs and runs[-1][0] == indented:
                runs[-1][1].append(line)
            else:
                runs.append((indented, [line]))
        for indented, lines in runs:
            if indented:
                width = min(len(ln) - len(ln.lstrip()) for ln in lines if ln.strip())
                out.append("```text\n" + "\n".join(ln[width:] for ln in lines) + "\n```")
            else:
                out.append(_inline(" ".join(lines)))
    return "\n\n".join(out)


def _usage(parser: argparse.ArgumentParser) -> str:
    fmt = _formatter(parser)
    fmt.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return _machine_free(fmt.format_help().strip())


def _invocation(fmt: argparse.HelpFormatter, action: argparse.Action) -> str:
    """An option's strings, each with its metavar (`-v`, `--verbose`; `--study DIR`), or a
    positional's metavar (`DIR [DIR ...]`)."""
    if not action.option_strings:
        return _code(fmt._format_args(action, action.dest))
    if action.nargs == 0:
        return ", ".join(_code(s) for s in action.option_strings)
    args = fmt._format_args(action, action.dest.upper())
    return ", ".join(_code(f"{s} {args}") for s in action.option_strings)


def _subparsers(parser: argparse.ArgumentParser):
    """(name, help, subparser) of each subcommand, aliases once, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield name, helps.get(name), sub


def _options(parser: argparse.ArgumentParser) -> str:
    fmt = _formatter(parser)
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        text = _machine_free(fmt._expand_help(action) if action.help else "")
        if action.required and action.option_strings:
            text = f"{text} (required)".strip()
        rows.append([_invocation(fmt, action), _inline(text, table=True)])
    return _table(["option", "description"], rows) if rows else ""


def _command(parser: argparse.ArgumentParser, help_line: str | None, level: int) -> list[str]:
    """The section of ``parser`` (its usage, description, options, commands and epilog), then one
    section per subcommand, a heading level deeper."""
    fc = parser.formatter_class
    raw = inspect.isclass(fc) and issubclass(fc, argparse.RawDescriptionHelpFormatter)
    subs = list(_subparsers(parser))
    commands = _table(["command", "description"], [[_code(name), _inline(_machine_free(h or ""), table=True)]
                                                   for name, h, _ in subs]) if subs else ""
    parts = [f"{'#' * level} {_code(parser.prog)}", _inline(_machine_free(help_line or "")),
             "```text\n" + _usage(parser) + "\n```", _prose(parser.description, raw), _options(parser),
             commands, _prose(parser.epilog, raw)]
    out = ["\n\n".join(p for p in parts if p)]
    for _name, sub_help, sub in subs:
        out += _command(sub, sub_help, level + 1)
    return out


def cli_markdown() -> str:
    """The command-line reference: the ``raystudy`` command and one section per subcommand, each
    with its usage, description, every option with its help, and its epilog."""
    from .cli import build_parser

    return "\n\n".join(["# Command-line reference", *_command(build_parser(), None, 2)]) + "\n"


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    """``python -m raystudy.reference OUTDIR``: write OUTDIR/config.md and OUTDIR/cli.md (atomically)."""
    from .tables import write_text

    p = argparse.ArgumentParser(prog="python -m raystudy.reference",
                                description="Write the configuration and command-line references as "
                                            "OUTDIR/config.md and OUTDIR/cli.md.")
    p.add_argument("outdir", metavar="OUTDIR", help="folder to write into (made if missing)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse has printed
        return int(e.code or 0)
    out = Path(args.outdir)
    try:
        if out.exists() and not out.is_dir():
            raise DocsError(f"OUTDIR {out} is a file, not a folder")
        pages = {"config.md": config_markdown(), "cli.md": cli_markdown()}
        try:
            for name, text in pages.items():
                print(write_text(out / name, text))
        except OSError as e:
            raise DocsError(f"cannot write into {out}: {one_line(e)}") from None
    except UserError as e:
        print(f"raystudy.reference: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
