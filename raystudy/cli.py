"""`raystudy ...`: parses arguments and calls the package, nothing more."""

from __future__ import annotations

import argparse
import logging
import sys

RUN_HELP = """Run every stage of a study (train -> generate -> knn -> classify -> figures).
A stage whose output is complete is skipped, so running the same command again
after an interruption resumes where it stopped, and a finished study does nothing."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raystudy", description="Memorization -> generalization scaling studies "
                                "of diffusion models on Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a study from a YAML config", description=RUN_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("config", help="YAML config (see configs/); sections study, data, ks, seeds, model, train, "
                   "generate, knn, classify, ray")
    r.add_argument("--study", required=True, metavar="DIR",
                   help="study directory: config.yaml, models/, tables/<name>/*.parquet and figures/ land here")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                   help="override one config value (YAML syntax), e.g. --set train.images=25600 "
                        "--set 'ks=[2,16]'; repeatable")
    r.add_argument("--dry-run", action="store_true",
                   help="print the resolved config and what each stage would do, then exit")
    r.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    s = sub.add_parser("show", help="print a finished study's fractions table")
    s.add_argument("study", metavar="DIR", help="study directory")
    sub.add_parser("toy", help="the 2-D circle study (run `raystudy toy --help`)", add_help=False)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["toy"]:
        from .toy.cli import main as toy_main

        return toy_main(argv[1:]) or 0
    args = _parser().parse_args(argv)
    from .config import ConfigError, load
    from .data import DataError
    from .model import CheckpointError
    from .study import StudyError, fractions_text, run

    try:
        if args.command == "show":
            print(fractions_text(args.study))
            return 0
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
        cfg = load(args.config, args.overrides)
        run(cfg, args.study, dry_run=args.dry_run)
    except (ConfigError, DataError, StudyError, CheckpointError, FileNotFoundError) as e:
        print(f"raystudy: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
