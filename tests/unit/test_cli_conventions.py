"""The command line's conventions: options where a user types them, lists generated from the
package, one line (exit 2) for every mistake, a dry run a script can rely on, tables a script
can read. No Ray: dry runs, parse-level checks and small fabricated study folders."""

import csv
import io
import json
import logging
import sys

import pandas as pd
import pytest

from tests.conftest import TINY


def _commands():
    from raystudy.cli import build_parser

    return build_parser()._subparsers._group_actions[0].choices


def test_verbosity_goes_before_or_after_the_command(tmp_path, capsys):
    from raystudy.analysis import synthetic
    from raystudy.cli import build_parser, main

    p = build_parser()
    for argv, verbose, quiet in ((["-v", "show", "D"], True, False), (["show", "-v", "D"], True, False),
                                 (["--quiet", "show", "D"], False, True), (["show", "D", "-q"], False, True),
                                 (["show", "D"], False, False)):
        args = p.parse_args(argv)
        assert (args.verbose, args.quiet) == (verbose, quiet), argv
    # The level the command runs at is the one asked for before the command.
    study = synthetic.write_study(tmp_path / "s", ks=(2, 8), seeds=(0,), n=4)
    log = logging.getLogger("raystudy")
    try:
        assert main(["-v", "show", str(study)]) == 0
        assert log.level == logging.DEBUG
        assert main(["-q", "show", str(study)]) == 0
        assert log.level == logging.WARNING
    finally:
        log.setLevel(logging.NOTSET)
    capsys.readouterr()
    assert main(["-v", "show", "-q", str(study)]) == 2
    assert capsys.readouterr().err == "raystudy: error: -v/--verbose and -q/--quiet exclude each other\n"


def test_stage_and_section_lists_are_the_packages(capsys):
    """The help is generated from one list of stages and one of config sections, and those are
    the package's (the CLI spells them out so that --help imports nothing heavy)."""
    from raystudy import cli
    from raystudy.config import StudyConfig
    from raystudy.study import STAGES

    assert cli.STAGE_NAMES == tuple(STAGES)
    assert cli.OPTIONAL_STAGES == tuple(n for n, st in STAGES.items() if not st.enabled(StudyConfig()))
    assert cli.SECTIONS == tuple(StudyConfig.model_fields)
    # --only is declared once, with the stages as its choices, for every command that runs stages.
    commands = _commands()
    only = [next(a for a in commands[c]._actions if "--only" in a.option_strings) for c in ("run", "toy", "submit")]
    assert all(a is only[0] for a in only) and tuple(only[0].choices) == tuple(STAGES)
    assert cli.main(["run", str(TINY), "--study", "x", "--only", "twin"]) == 2
    assert "invalid choice: 'twin'" in capsys.readouterr().err
    assert cli.main(["run", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert " -> ".join(STAGES) in out and ", ".join(StudyConfig.model_fields) in out
    assert f"({', '.join(STAGES)})" in out  # the --only help
    assert cli.main(["submit", "--help"]) == 0
    out = capsys.readouterr().out
    assert sys.executable not in out and "twins" in out


def test_an_override_without_set_says_use_set(tmp_path, capsys):
    from raystudy.cli import main

    for argv, word in ((["run", "demo", "--study", str(tmp_path / "s"), "train.images=1000"], "train.images=1000"),
                       (["run", str(TINY), "ks=[2, 16]", "--study", str(tmp_path / "s")], "'ks=[2, 16]'"),
                       (["submit", str(TINY), "--study", "/s", "data.held_out=10"], "data.held_out=10")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err == f"raystudy: error: unrecognized argument {word.strip(chr(39))}: use --set {word}\n", err
    assert not (tmp_path / "s").exists()
    # Anything else is argparse's own message; a command without --set has no overrides to suggest.
    assert main(["run", "demo", "--study", str(tmp_path / "s"), "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert main(["show", str(tmp_path), "a.b=1"]) == 2
    assert "use --set" not in capsys.readouterr().err


def test_show_prints_the_fractions_table_as_csv_or_json(tmp_path, capsys):
    from raystudy.analysis import synthetic
    from raystudy.cli import main

    study = synthetic.write_study(tmp_path / "s", ks=(2, 8, 32), seeds=(0, 1), n=20, metrics=("l2", "lpips-alex"))
    assert main(["show", str(study), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert main(["show", str(study), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    # Independently: the stored per-seed fractions, averaged over seeds (n summed).
    fr = pd.read_parquet(study / "tables" / "fractions")
    want = fr.groupby(["metric", "K"]).agg(n=("n", "sum"), memorized=("memorized", "mean"),
                                          spurious=("spurious", "mean"), generalized=("generalized", "mean"))
    assert len(rows) == len(records) == len(want) == 6
    for row, rec in zip(rows, records):
        assert list(row) == list(rec) == ["metric", "K", "n", "memorized", "mem_lo", "mem_hi", "spurious",
                                          "generalized", "ratio_memorized"]
        w = want.loc[(rec["metric"], rec["K"])]
        assert rec["n"] == int(row["n"]) == w["n"]
        for c in ("memorized", "spurious", "generalized"):
            assert rec[c] == pytest.approx(w[c], abs=1e-12) and float(row[c]) == pytest.approx(w[c], abs=1e-12)
        assert 0 <= rec["mem_lo"] <= rec["memorized"] <= rec["mem_hi"] <= 1
        assert float(row["mem_lo"]) == pytest.approx(rec["mem_lo"])
    assert [(r["metric"], r["K"]) for r in records] == list(want.index)
    assert main(["show", str(study), "--csv", "--json"]) == 2


def _memorizer_study(tmp_path):
    """A digits study whose train stage the exact memorizer made (its parts, as the stage writes them)."""
    from raystudy.config import load_config
    from raystudy.study import TRAIN

    cfg = load_config(TINY, ["model.type=empirical"])
    study = tmp_path / "s"
    TRAIN.run_units(cfg, study, TRAIN.units(cfg))
    return study


def test_a_refusal_names_the_leaf_keys_that_changed(tmp_path, capsys):
    from raystudy.cli import main
    from raystudy.stages import changed

    stored = {"depends": json.dumps({"model": {"type": "empirical", "attention": [False, True],
                                               "block_out_channels": [32, 64]}, "train.lr": 0.002})}
    want = {"model": {"type": "unet", "attention": (False, True), "block_out_channels": (32, 64, 64)},
            "train.lr": 0.002}
    assert changed(stored, want) == "model.block_out_channels: [32, 64] -> [32, 64, 64], model.type: empirical -> unet"
    assert changed(stored, {**want, "model": {**want["model"], "type": "empirical", "block_out_channels": (32, 64)}}
                   ) == "made by another version of raystudy"

    study = _memorizer_study(tmp_path)
    # A UNet config against the memorizer's study: refused, naming the key, whole, in one line.
    assert main(["run", str(TINY), "--study", str(study)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.type: empirical -> unet" in err and "..." not in err, err
    assert "use a new --study directory" in err and not (study / "config.yaml").exists()


def test_dry_run_prints_the_plan_first_and_fails_where_the_run_would_be_refused(tmp_path, capsys):
    from raystudy.cli import main

    new = tmp_path / "new"
    assert main(["run", str(TINY), "--study", str(new), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would run train: reads -; writes runs, train_log, loss_curves; 2 of 2 missing")
    assert "\nks:\n" not in out and "name: tiny" not in out and not new.exists()
    assert main(["-v", "run", str(TINY), "--study", str(new), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would run train:") and out.index("would run figures") < out.index("\nks:\n- 2\n- 16\n")

    study = _memorizer_study(tmp_path)
    assert main(["run", str(TINY), "--study", str(study), "--set", "model.type=empirical", "--dry-run"]) == 0
    assert "train: reads -; writes runs, train_log, loss_curves; 0 of 2 missing, 0 stale" in capsys.readouterr().out
    assert main(["run", str(TINY), "--study", str(study), "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert "would run train: reads -; writes runs, train_log, loss_curves; 0 of 2 missing, 2 stale (refused)" in out
    assert err.startswith("raystudy: error:") and err.count("\n") == 1 and "model.type: empirical -> unet" in err


def test_a_study_or_report_folder_that_cannot_be_written_is_one_line(tmp_path, capsys):
    """Root writes anywhere, so the folder that cannot be written here is one a file stands in for."""
    from raystudy.analysis import synthetic
    from raystudy.cli import main

    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    study = tmp_path / "study"
    study.mkdir()
    done = synthetic.write_study(tmp_path / "done", ks=(2, 8), seeds=(0,), n=4)
    (done / "report").write_text("a file")

    def refused(argv, path):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("raystudy: error: cannot write to") and err.count("\n") == 1, err
        assert f"{path} is a file where a folder must be; move it away or name another folder" in err, err

    refused(["run", str(TINY), "--study", str(blocker / "s")], blocker)
    refused(["run", str(TINY), "--study", str(blocker / "s"), "--dry-run"], blocker)
    # A run stops before it reads the study (where a file in the way would be a traceback) and
    # before Ray starts; a dry run stops there too.
    for sub, dry in (("figures", []), ("tables", ["--dry-run"]), ("models", ["--dry-run"])):
        (study / sub).write_text("a file")
        refused(["run", str(TINY), "--study", str(study), *dry], study / sub)
        (study / sub).unlink()
    refused(["report", str(done)], done / "report")
    refused(["report", str(done), str(done), "--out", str(blocker / "r")], blocker)
    assert blocker.read_text() == "a file" and list(study.iterdir()) == []
