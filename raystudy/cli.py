"""`raystudy ...`: one parser, one error handler; every command calls the package, nothing more.

Everything a user can get wrong raises ``errors.UserError``, printed here, once, as one line
on stderr with exit code 2; anything else is a bug and keeps its traceback. Progress goes
through ``logging`` (logger ``raystudy``): ``-v`` adds debug messages, ``-q`` keeps warnings only."""

from __future__ import annotations

import argparse
import logging
import re
import sys

from .errors import UserError, one_line

# raystudy.study.STAGES and raystudy.config.StudyConfig's sections, by name: importing either
# takes longer than --help may (pydantic, numpy), so they are spelled out here, and
# tests/unit/test_cli_conventions.py checks that they agree with the package.
STAGE_NAMES = ("train", "generate", "knn", "classify", "twins", "basins", "energy", "figures")
OPTIONAL_STAGES = ("twins", "basins", "energy")  # off unless the config turns them on
SECTIONS = ("study", "data", "ks", "seeds", "model", "train", "generate", "knn", "classify", "basins", "energy",
            "sweep", "ray", "variants", "twins")


def _stage_list() -> str:
    *head, last = OPTIONAL_STAGES
    return f"{', '.join(head)} and {last}"


RUN_HELP = f"""Run every stage of a study, in order:
  {' -> '.join(STAGE_NAMES)}
({_stage_list()} only where the config turns them on).
A stage does only what is missing or stale: every output part remembers the config
values it was made with, so running the same command again after an interruption
resumes where it stopped, a finished study does nothing, and a changed setting
recomputes exactly what depends on it (or, for training settings, is refused)."""

TOY_HELP = ("The paper's 2-D circle through the study's stages: a score MLP per K (VE SDE, denoising score "
            "matching, EMA), Euler-Maruyama samples, memorized/spurious/generalized labels in the usual tables, "
            "then attractors with their energies (probability-flow ODE, exact divergence), the exact DenseAM "
            "energy at the largest K, and figures. Exactly `raystudy run configs/circle.yaml --study DIR`.")
TOY_QUICK = ["ks=[2, 9]", "train.images=1024000", "generate.n_samples=100"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("raystudy")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _common(top: bool) -> argparse.ArgumentParser:
    """-v / -q, before the command or after it. A subcommand's copy sets them only when given
    (argparse copies every attribute of a subcommand's namespace over the top one's)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_mutually_exclusive_group()
    default = False if top else argparse.SUPPRESS
    g.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="also print debug messages")
    g.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="print warnings and errors only (no progress)")
    return p


def _overrides() -> argparse.ArgumentParser:
    """--set, for every command that loads a study config."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                   help="override one config value (YAML syntax), e.g. --set train.images=25600 "
                        "--set 'ks=[2,16]'; repeatable")
    return p


def _only() -> argparse.ArgumentParser:
    """--only, for every command that runs a study's stages (run, toy, submit)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--only", metavar="STAGE", choices=STAGE_NAMES, default=None,
                   help=f"run one stage alone ({', '.join(STAGE_NAMES)}), e.g. --only knn after adding a metric")
    return p


def _dry_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true",
                   help="print, per stage, what it reads and writes and how many parts are missing or stale "
                        "(and which key changed), then exit: 2 where the run would be refused (stale training "
                        "output, a study folder it cannot write), else 0; -v adds the resolved config")


UNPACK_HELP = ("Check a dataset's official archive against its MD5 and unpack it into DIR, in the layout "
               "data.path expects (cifar10: DIR/cifar-10-batches-py/data_batch_1..5 and test_batch; an existing "
               "one is replaced). Nothing is downloaded: fetch the archive where there is internet and copy it "
               "here (on a cluster, onto the shared volume). The batches appear in DIR all at once, when "
               "complete.")


REPORT_HELP = ("Draw a study's figures from its tables and write one self-contained HTML page (figures "
               "embedded, crossing K with its interval, spurious peak, fractions table, stage run times, provenance, "
               "config). With several DIRs the studies are compared side by side.")
REPORT_EPILOG = "Reads only the Parquet tables and config.yaml: no torch, no Ray, nothing is re-run."


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR",
                   help="study folder (holds config.yaml and tables/); give two or more to compare them")
    p.add_argument("--out", default=None, metavar="FOLDER",
                   help="folder to write the PNGs and report.html into (default: DIR/report for one study, "
                        "FIRST_DIR/report/compare for several)")
    p.add_argument("--pdf", action="store_true", help="also write every figure as a PDF beside its PNG")
    p.add_argument("--n-boot", type=int, default=1000, metavar="N",
                   help="bootstrap replicates (seeds, then samples within seed) for the per-K intervals of a study with "
                        "several seeds (default: 1000; one seed uses exact intervals)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Imports nothing heavy (no numpy, pandas, scipy, torch or Ray), so
    ``--help`` answers at once: each command imports what it needs when it runs."""
    from . import submit

    p = argparse.ArgumentParser(prog="raystudy", description="Memorization -> generalization scaling studies "
                                "of diffusion models on Ray.", parents=[_common(top=True)])
    p.add_argument("--version", action="version", version=f"raystudy {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common, overrides, only = _common(top=False), _overrides(), _only()

    r = sub.add_parser("run", parents=[common, overrides, only], help="run a study from a YAML config",
                       description=RUN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("config", help=f"YAML config, or a packaged one by name (demo, cifar10, ...); sections "
                                  f"{', '.join(SECTIONS)}")
    r.add_argument("--study", required=True, metavar="DIR",
                   help="study directory: config.yaml, models/, tables/<name>/*.parquet and figures/ land here")
    _dry_run(r)
    r.set_defaults(func=_run)

    t = sub.add_parser("toy", parents=[common, overrides, only], help="the 2-D circle study", description=TOY_HELP)
    t.add_argument("--study", "--out", default="studies/toy", metavar="DIR", dest="study",
                   help="study directory (default %(default)s)")
    t.add_argument("--quick", action="store_true", help=f"a smoke run: {' '.join('--set ' + q for q in TOY_QUICK)}")
    _dry_run(t)
    t.set_defaults(func=_toy)

    im = sub.add_parser("import-samples", parents=[common, overrides],
                        help="samples we did not generate (the paper's .npz files, PNGs) as a study's samples",
                        description="Write images as the eval and ref samples of one (K, seed) of a study, with "
                                    "the train and generate stages marked complete for it, so `raystudy run` "
                                    "labels them (knn, classify, figures). SOURCE: a .npz file (key 'samples', "
                                    "(n, C, H, W) in [-1, 1], the paper's run_generate.py layout), a folder of "
                                    ".npz files, or a folder of PNGs. Without --ref the first generate.n_samples "
                                    "images are the eval set and the next ones the ref set.")
    im.add_argument("config", help="YAML config of the study (its data, ks, seeds, generate.n_samples)")
    im.add_argument("source", metavar="SOURCE", help=".npz file or folder of .npz / .png files")
    im.add_argument("--study", required=True, metavar="DIR", help="study directory")
    im.add_argument("--k", type=int, required=True, metavar="K", help="the training-set size the samples belong to")
    im.add_argument("--seed", type=int, default=0, help="the training seed (default %(default)s)")
    im.add_argument("--ref", default=None, metavar="SOURCE", help="the ref set (d_synth), if not in SOURCE")
    im.set_defaults(func=_import)

    s = sub.add_parser("show", parents=[common], help="print a study's fractions table")
    s.add_argument("study", metavar="DIR", help="study directory")
    fmt = s.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_const", const="csv", dest="format",
                     help="print the table (metric, K, n, the fractions, mem_lo/mem_hi) as CSV, for scripts")
    fmt.add_argument("--json", action="store_const", const="json", dest="format",
                     help="print the table as a JSON list of records (NaN as null), for scripts")
    s.set_defaults(func=_show)

    rep = sub.add_parser("report", parents=[common], help="figures and an HTML report from study tables",
                         description=REPORT_HELP, epilog=REPORT_EPILOG)
    _report_arguments(rep)
    rep.set_defaults(func=_report)

    q = sub.add_parser("query", parents=[common], help="SQL (DuckDB) over one or several studies' tables",
                       description="Every table is a view (runs, samples, neighbors, labels, fractions, train_log, "
                                   "basins, ...) with a leading `study` column. Without --sql this runs the "
                                   "documented example: the memorized fraction per K under another threshold, "
                                   "straight from the stored distances.")
    q.add_argument("dirs", nargs="+", metavar="DIR", help="study folder(s)")
    q.add_argument("--sql", default=None, help="the query (default: the example query)")
    q.set_defaults(func=_query)

    up = sub.add_parser("unpack", parents=[common], help="a dataset's official archive into the folder data.path names",
                        description=UNPACK_HELP)
    up.add_argument("dataset", metavar="DATASET", choices=["cifar10"], help="the dataset the archive holds: cifar10")
    up.add_argument("archive", metavar="ARCHIVE",
                    help="the archive, downloaded beforehand (cifar10: cifar-10-python.tar.gz from "
                         "https://www.cs.toronto.edu/~kriz/cifar.html)")
    up.add_argument("--to", required=True, metavar="DIR",
                    help="the folder to unpack into, then the study's data.path (created if absent)")
    up.add_argument("--md5", default=None, metavar="HEX",
                    help="the MD5 ARCHIVE must have (default: the official archive's, "
                         "raystudy.datasets.archives.CIFAR10_MD5)")
    up.set_defaults(func=_unpack)

    sm = sub.add_parser("submit", parents=[common, overrides, only], help="run a study as a Ray job on a cluster",
                        description=submit.DESCRIPTION, epilog=submit.EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    submit.add_arguments(sm)
    sm.set_defaults(func=submit.command)
    return p


class _Console(logging.Handler):
    """Progress to stdout, warnings and worse to stderr (where errors go), looked up at each
    message so a redirected sys.stdout (a notebook, a test) gets it."""

    def emit(self, record):
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        stream.write(self.format(record) + "\n")
        stream.flush()


def _setup_logging(args) -> None:
    log = logging.getLogger("raystudy")
    log.setLevel(logging.DEBUG if getattr(args, "verbose", False) else
                 logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    if not any(isinstance(h, _Console) for h in log.handlers):
        log.addHandler(_Console())
        log.propagate = False


def _load(config, overrides):
    from .config import from_dict, load_config

    return from_dict(config, overrides) if isinstance(config, dict) else load_config(config, overrides)


def run_command(config, study: str, overrides, dry_run: bool = False, only=None) -> None:
    """Load a config (a path or a dict) and run the study."""
    from .study import check_only, run

    cfg = _load(config, overrides)
    check_only(only)
    if cfg.sweep.enabled:  # the study's K come from the adaptive sweep, round by round
        from .adaptive import run_sweep

        run_sweep(cfg, study, dry_run=dry_run, only=only)
    else:
        run(cfg, study, dry_run=dry_run, only=only)


def _run(args) -> None:
    run_command(args.config, args.study, args.overrides, args.dry_run, args.only)


def _toy(args) -> None:
    from .datasets.toy import CIRCLE_CONFIG

    run_command(str(CIRCLE_CONFIG), args.study, (TOY_QUICK if args.quick else []) + args.overrides,
                args.dry_run, args.only)


def _import(args) -> None:
    from .importing import import_samples

    cfg = _load(args.config, args.overrides)
    got = import_samples(cfg, args.study, args.k, args.seed, args.source, args.ref)
    print(f"imported K={args.k} seed={args.seed}: " + ", ".join(f"{n} {s}" for s, n in got.items())
          + f" samples into {args.study}; `raystudy run` labels them")


def _unpack(args) -> None:
    from .datasets.archives import unpack_cifar10

    dest = unpack_cifar10(args.archive, args.to, args.md5)
    print(f"unpacked {args.archive} (MD5 checked) into {dest}: use --set data.path={args.to}")


def _show(args) -> None:
    from .study import fractions_records, fractions_text

    print(fractions_records(args.study, args.format) if args.format else fractions_text(args.study))


def _report(args) -> None:
    from pathlib import Path

    from .analysis.report import command
    from .study import check_writable

    # Before any figure is drawn (matplotlib would fail on the first one, seconds in). The default
    # folder is inside the first study; a DIR that is no folder is the report's own one line.
    if args.out is not None or Path(args.dirs[0]).is_dir():
        check_writable(args.out or Path(args.dirs[0]) / "report" / ("compare" if len(args.dirs) > 1 else ""),
                       option="--out")
    print(f"report: {command(args.dirs, args.out, pdf=args.pdf, n_boot=args.n_boot)}")


def _query(args) -> None:
    import duckdb

    from . import analysis as A

    try:
        df = A.connect(args.dirs).sql(args.sql or A.EXAMPLE_QUERY).df()
    except duckdb.Error as e:  # the user's SQL: a typo, a table or column that is not there
        raise UserError(f"query: {one_line(e)}") from None
    print(df.to_string(index=False))


# A word that reads as a config override (`train.images=1000`, `ks=[2,16]`, Hydra style).
_OVERRIDE = re.compile(r"[A-Za-z_][\w-]*(\.[\w-]+)*=")


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args, extra = parser.parse_known_args(argv)
    if extra:
        written = next((x for x in extra if _OVERRIDE.match(x)), None)
        if written is not None and hasattr(args, "overrides"):
            import shlex

            raise UserError(f"unrecognized argument {written}: use --set {shlex.quote(written)}")
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "verbose", False) and getattr(args, "quiet", False):
        raise UserError("-v/--verbose and -q/--quiet exclude each other")
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # before the parser: a version check should cost nothing
        print(f"raystudy {_version()}")
        return 0
    parser = build_parser()
    try:
        try:
            args = _parse(parser, argv)
        except SystemExit as e:  # --help, --version, or a usage error argparse has printed
            return int(e.code or 0)
        _setup_logging(args)
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"raystudy: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `raystudy ... | head` closed the pipe: what was asked for has been read
        import os

        # Python flushes stdout again at exit: point it at /dev/null so that is no second error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
