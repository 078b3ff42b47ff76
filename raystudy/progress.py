"""What a person sees while a study runs: one line per stage now and then with done/total and
an ETA, and Ray's own output at the level the command line asks for: ``-q`` quiets Tune's
status tables and Ray Data's progress, the default keeps Tune's tables, ``-v`` shows all
(``stages.shards.ray_data_output``: Ray stays in the stage layer)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("raystudy")


def level() -> int:
    return log.getEffectiveLevel()


def tune_verbosity() -> int:
    """Tune's ``verbose``: 0 under -q (warnings only), 2 under -v (every trial's results), else
    1 (its status table with each run's label and the metrics ``stages.train.FOLLOWED``)."""
    return 0 if level() > logging.INFO else 2 if level() < logging.INFO else 1


def clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """``[generate] 5/12 shards (1,000/2,400 samples), 0:42 elapsed, ETA 0:58``: logged at
    most every ``every_s`` seconds, and always for the last unit. The ETA assumes the rest
    goes at the pace so far."""

    def __init__(self, stage: str, total: int, unit: str, rows_total: int = 0, rows: str = "rows",
                 every_s: float = 10.0, echo=None, clock_fn=time.monotonic):
        self.stage, self.total, self.unit, self.rows_total, self.rows_name = stage, total, unit, rows_total, rows
        self.every_s, self.echo, self.now = every_s, echo or log.info, clock_fn
        self.done = self.rows = 0
        self.t0 = self.last = self.now()

    def update(self, n: int = 1, rows: int = 0) -> None:
        self.done += n
        self.rows += rows
        t = self.now()
        if self.done >= self.total or t - self.last >= self.every_s:
            self.last = t
            self.echo(self.line(t - self.t0))

    def line(self, elapsed: float) -> str:
        text = f"[{self.stage}] {self.done}/{self.total} {self.unit}"
        if self.rows_total:
            text += f" ({self.rows:,}/{self.rows_total:,} {self.rows_name})"
        text += f", {clock(elapsed)} elapsed"
        if 0 < self.done < self.total:
            text += f", ETA {clock(elapsed * (self.total - self.done) / self.done)}"
        return text
