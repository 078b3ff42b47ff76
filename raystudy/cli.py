"""`raystudy ...`: parses arguments and calls the package, nothing more.

Everything a user can get wrong raises ``errors.UserError``, printed here as one line
(exit 2); anything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import logging
import sys

RUN_HELP = """Run every stage of a study (train -> generate -> knn -> classify -> figures).
A stage does only what is missing or stale: every output part remembers the config
values it was made with, so running the same command again after an interruption
resumes where it stopped, a finished study does nothing, and a changed setting
recomputes exactly what depends on it (or, for training settings, is refused)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raystudy", description="Memorization -> generalization scaling studies "
                                "of diffusion models on Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a study from a YAML config", description=RUN_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("config", help="YAML config (see configs/); sections study, data, ks, seeds, model, train, "
                   "generate, knn, classify, basins, energy, ray")
    r.add_argument("--study", required=True, metavar="DIR",
                   help="study directory: config.yaml, models/, tables/<name>/*.parquet and figures/ land here")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                   help="override one config value (YAML syntax), e.g. --set train.images=25600 "
                        "--set 'ks=[2,16]'; repeatable")
    r.add_argument("--dry-run", action="store_true",
                   help="print the resolved config and, per stage, what it reads and writes and how many "
                        "parts are missing or stale (and which key changed), then exit")
    r.add_argument("--only", metavar="STAGE", default=None,
                   help="run one stage alone (train, generate, knn, classify, figures, ...), e.g. --only knn "
                        "after adding a metric")
    r.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    s = sub.add_parser("show", help="print a study's fractions table")
    s.add_argument("study", metavar="DIR", help="study directory")
    sub.add_parser("toy", help="the 2-D circle study (run `raystudy toy --help`)", add_help=False)
    sub.add_parser("report", help="figures and an HTML report from study tables (`raystudy report --help`)",
                   add_help=False)
    sub.add_parser("submit", help="run a study as a Ray job on a cluster (`raystudy submit --help`)",
                   add_help=False)
    return p


def _user_errors(fn) -> int:
    """Run ``fn``; a UserError becomes one line on stderr and exit code 2."""
    from .errors import UserError

    try:
        fn()
    except UserError as e:
        print(f"raystudy: error: {e}", file=sys.stderr)
        return 2
    return 0


def run_command(config, study: str, overrides, dry_run: bool = False, only=None, verbose: bool = False) -> int:
    """Load (a path or a dict) and run the study."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")

    def go():
        from .config import from_dict, load
        from .errors import ConfigError
        from .study import STAGES, run

        cfg = from_dict(config, overrides) if isinstance(config, dict) else load(config, overrides)
        if only is not None and only not in STAGES:
            raise ConfigError(f"--only: unknown stage {only!r}; stages: {', '.join(STAGES)}")
        run(cfg, study, dry_run=dry_run, only=only)
    return _user_errors(go)


# Subcommands with their own parser, in their own module.
DELEGATED = {"toy": "raystudy.toy.cli", "submit": "raystudy.submit", "report": "raystudy.analysis.report"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in DELEGATED:
        import importlib

        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:]) or 0
    args = _parser().parse_args(argv)
    if args.command == "show":
        from .study import fractions_text

        return _user_errors(lambda: print(fractions_text(args.study)))
    return run_command(args.config, args.study, args.overrides, args.dry_run, args.only, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
