"""The command line: one line for a user's mistake, and an answer at once for --help and --version."""


def test_show_needs_a_study(tmp_path, capsys):
    from raystudy.cli import main

    assert main(["show", str(tmp_path)]) == 2
    assert "holds no study" in capsys.readouterr().err


def test_building_the_parser_imports_nothing_heavy():
    """--help must answer at once: the parser is built from the CLI's own text, and each command
    imports what it needs only when it runs."""
    import subprocess
    import sys

    code = ("import sys, raystudy.cli as c; c.build_parser(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'pandas', 'scipy', 'torch', 'ray', "
            "'pyarrow', 'matplotlib', 'sklearn', 'pydantic'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_version_and_help(capsys):
    from importlib.metadata import version

    from raystudy.cli import build_parser, main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"raystudy {version('raystudy')}"
    assert main(["report", "--help"]) == 0
    out = capsys.readouterr().out
    for action in build_parser()._subparsers._group_actions[0].choices["report"]._actions:
        for opt in action.option_strings:
            assert opt in out
