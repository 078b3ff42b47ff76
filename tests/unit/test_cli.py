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


def test_bad_sql_is_one_line(tmp_path, capsys):
    from raystudy.analysis import synthetic
    from raystudy.cli import main

    study = synthetic.write_study(tmp_path / "s", ks=(2, 8), seeds=(0,), n=4)
    assert main(["query", str(study), "--sql", "SELECT * FROM nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raystudy: error: query:") and "nope" in err and err.count("\n") == 1, err


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    """`raystudy run ... --dry-run | head`: the reader closes the pipe (here before the command
    writes a line); the command stops without a traceback."""
    import subprocess
    import sys

    from tests.conftest import TINY

    p = subprocess.Popen([sys.executable, "-m", "raystudy.cli", "run", str(TINY), "--study", str(tmp_path / "s"),
                          "--dry-run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 1 and "Traceback" not in err and "Error" not in err, err
