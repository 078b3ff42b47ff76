"""The generated references: every config key described and listed with its true default, every
command and option of the parser listed, and pages that do not depend on the terminal."""

import argparse
import json
import re

import pytest
from pydantic import BaseModel, Field

from raystudy.cli import build_parser
from raystudy.config import StudyConfig
from raystudy.reference import _sections, cli_markdown, config_markdown, main

CELL = re.compile(r"(?<!\\)\|")


def _undescribed(cls: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted keys with no description; a section may be described by its class docstring."""
    out = []
    for name, field in cls.model_fields.items():
        sub = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        text = field.description or (sub.__doc__ if sub is not None else None) or ""
        if not text.strip():
            out.append(prefix + name)
        if sub is not None:
            out += _undescribed(sub, f"{prefix}{name}.")
    return out


def test_every_config_key_is_described():
    assert _undescribed(StudyConfig) == []


def test_the_description_check_sees_a_nested_key_without_one():
    class Inner(BaseModel):
        """described"""
        x: int = Field(1, description="an x")
        y: int = Field(2, description="  ")

    class Outer(BaseModel):
        inner: Inner = Inner()
        z: int = 3

    assert _undescribed(Outer) == ["inner.y", "z"]


def _schema_keys(schema: dict, node: dict, prefix: str = "") -> list[str]:
    """Every leaf key of the JSON schema, dotted: a property that refers to a model is a section."""
    out = []
    for name, prop in node["properties"].items():
        ref = prop.get("$ref") or next((a["$ref"] for a in prop.get("allOf", []) if "$ref" in a), None)
        if ref:
            out += _schema_keys(schema, schema["$defs"][ref.split("/")[-1]], f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def _rows(md: str) -> dict[str, list[str]]:
    """Table rows by their first cell's code span (`key` or `--option ARG`)."""
    rows = {}
    for line in md.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in CELL.split(line)[1:-1]]
            rows[cells[0].strip("`")] = cells
    return rows


def test_config_markdown_lists_every_key_with_the_default_instance_s_value():
    schema = StudyConfig.model_json_schema()
    keys = _schema_keys(schema, schema)
    assert len(keys) == 100 and "train.lr" in keys and "classify.delta_m" in keys
    defaults = StudyConfig().to_dict()
    rows = _rows(config_markdown())
    assert sorted(rows) == sorted(keys)
    for key in keys:
        value = defaults
        for part in key.split("."):
            value = value[part]
        _, typ, default, description = rows[key]
        assert default == f"`{json.dumps(value)}`", key
        assert typ and description, key
    assert rows["ks"][1] == "list[int]"
    assert rows["train.lr"][1:3] == ["float", "`0.002`"]
    assert rows["data.path"][1:3] == [r"str \| null", "`null`"]
    assert rows["model.type"][1] == r'"unet" \| "empirical" \| "circle-mlp" \| "gaussian"'
    assert rows["classify.delta_m"][2] == '`{"l2": 0.1, "euclidean": 0.02, "lpips-alex": 0.03, "lpips-vgg": 0.03}`'


def test_nested_sections_get_their_own_dotted_section():
    class Inner(BaseModel):
        """The inner one."""
        depth: int = Field(3, description="how deep")

    class Outer(BaseModel):
        """The outer one."""
        inner: Inner = Inner()
        width: float = Field(0.5, description="how wide")

    class Top(BaseModel):
        outer: Outer = Outer()
        flag: bool = Field(True, description="a flag")

    md = "\n\n".join(_sections(Top, Top().model_dump(mode="json")))
    assert md.index("## Top-level keys") < md.index("## `outer`") < md.index("### `outer.inner`")
    assert "The inner one." in md.split("### `outer.inner`")[1]
    rows = _rows(md)
    assert rows["outer.inner.depth"][1:] == ["int", "`3`", "how deep"]
    assert rows["outer.width"][2] == "`0.5`" and rows["flag"][2] == "`true`"


def _commands(parser: argparse.ArgumentParser):
    """(prog, parser) of the parser and every subcommand, recursively."""
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _commands(sub)


def _command_sections(md: str) -> dict[str, str]:
    parts = re.split(r"^#+ `(raystudy[^`]*)`$", md, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_cli_markdown_lists_every_command_and_option():
    md = cli_markdown()
    sections = _command_sections(md)
    commands = dict(_commands(build_parser()))
    assert {"raystudy", "raystudy run", "raystudy submit"} <= set(commands)
    assert sorted(sections) == sorted(commands)
    for prog, parser in commands.items():
        # Each row's first cell: a code span per option string (with its metavar), or the positional's.
        listed = {span.split(" ")[0]: cells for cells in _rows(sections[prog]).values()
                  for span in re.findall(r"`([^`]+)`", cells[0])}
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            for name in action.option_strings or [action.metavar or action.dest]:
                assert name in listed, (prog, name)
                assert listed[name][1] or not action.help, (prog, name)
        assert f"```text\n{prog} " in sections[prog], prog  # its usage
    run = _rows(sections["raystudy run"])
    assert run["--study DIR"][1].endswith("(required)")
    assert "SECTION.KEY=VALUE" in " ".join(run)


def test_pages_do_not_depend_on_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = cli_markdown()
    monkeypatch.setenv("COLUMNS", "300")
    assert cli_markdown() == narrow


def test_tables_render_with_every_cell_in_place():
    markdown = pytest.importorskip("markdown")
    for md, cells in ((config_markdown(), 4), (cli_markdown(), 2)):
        html = markdown.markdown(md, extensions=["tables", "fenced_code"])
        rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
        assert rows and all(len(re.findall(r"<t[dh]>", r)) == cells for r in rows)
        assert "<td><code>raystudy" not in html  # no usage line fell into a table
        assert "\\" not in re.sub(r"<pre>.*?</pre>|<code>.*?</code>", "", html, flags=re.S)  # escapes all undone
        if cells == 4:  # a type whose | must not end its cell (a renderer drops a row's extra cells)
            assert '<td>"unet" | "empirical" | "circle-mlp" | "gaussian"</td>' in html


def test_main_writes_both_pages(tmp_path, capsys):
    out = tmp_path / "ref"
    assert main([str(out)]) == 0
    assert (out / "config.md").read_text() == config_markdown()
    assert (out / "cli.md").read_text() == cli_markdown()
    assert sorted(p.name for p in out.iterdir()) == ["cli.md", "config.md"]  # no temporary left behind
    capsys.readouterr()
    assert main([str(out / "cli.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err
