"""The study's own progress lines and the verbosity Ray's output follows (no Ray started)."""

import logging

import pytest


def test_progress_lines_throttle_and_their_eta_is_the_pace_so_far():
    from raystudy.progress import Progress

    now, lines = [100.0], []
    p = Progress("generate", 4, "shards", 400, "samples", every_s=10, echo=lines.append, clock_fn=lambda: now[0])
    now[0] = 105.0
    p.update(1, 100)  # 5 s after the start: within every_s, nothing
    now[0] = 130.0
    p.update(1, 100)  # 30 s, 2 of 4 done: 30 s more at this pace
    now[0] = 131.0
    p.update(1, 100)  # 1 s after the last line: nothing
    now[0] = 190.0
    p.update(1, 100)  # the last unit always shows, without an ETA
    assert lines == ["[generate] 2/4 shards (200/400 samples), 0:30 elapsed, ETA 0:30",
                     "[generate] 4/4 shards (400/400 samples), 1:30 elapsed"]
    p = Progress("basins", 3, "units", echo=lines.append, clock_fn=lambda: now[0])
    now[0] += 4000
    p.update()
    assert lines[-1] == "[basins] 1/3 units, 1:06:40 elapsed, ETA 2:13:20"


@pytest.mark.parametrize("level, tune, bars", [(logging.WARNING, 0, False), (logging.INFO, 1, False),
                                               (logging.DEBUG, 2, True)])
def test_quiet_and_verbose_reach_tune_and_ray_data(level, tune, bars):
    import ray.data

    from raystudy import progress
    from raystudy.stages.shards import ray_data_output

    log = logging.getLogger("raystudy")
    old, ctx = log.level, ray.data.DataContext.get_current()
    log.setLevel(level)
    try:
        assert progress.tune_verbosity() == tune
        ray_data_output()
        assert ctx.enable_progress_bars is bars
        assert logging.getLogger("ray.data").isEnabledFor(logging.INFO) is bars
    finally:
        log.setLevel(old)
