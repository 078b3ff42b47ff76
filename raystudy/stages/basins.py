"""The basins stage: critical times of each (metric, K, seed)'s items (``raystudy.compute.items``),
one Ray Data actor call per unit, which measures them with ``basins.basins_group`` and writes
the unit's ``basins``, ``basin_trials`` and ``basin_rates`` parts itself."""

from __future__ import annotations

import numpy as np

from .. import axes, progress, tables
from ..cluster import pool
from ..compute import items
from ..splits import BASINS_SALT
from .generate import ModelActor
from .shards import axis_task, ray_data_output, task_axis


class UnitActor(ModelActor):
    """A model actor with the training schedule, fed one row per (metric, K, seed) unit."""

    def __init__(self, cfg_dict: dict, study_dir: str):
        from ..models.unet import build_train_scheduler

        super().__init__(cfg_dict, study_dir)
        self._schedules = {v: build_train_scheduler(axes.for_axis(self.cfg, axes.Axis(v)).model)
                           for v in axes.variants(self.cfg)}

    def schedule(self, axis):
        """The training noise schedule of the axis's variant."""
        return self._schedules[axis.variant]

    def __call__(self, batch: dict, metas: dict | None = None) -> dict:
        rows = []
        for metric, k, s, part, *ax in zip(*(batch[c].tolist() for c in (
                "metric", "K", "seed", "base", "variant", "twin", "snap"))):
            rows.append(self.unit(axes.Unit(k, s, metric, task_axis(*ax)), metas[part], part))
        return {"K": batch["K"], "seed": batch["seed"], "rows": np.asarray(rows)}

    def read_items(self, unit, c, salt: int) -> dict:
        """The unit's items (``items.select``, settings ``c``: basins or energy) from its labels and
        eval samples, read here."""
        labels = tables.read_unit(self.study_dir, "labels", unit, self.cfg,
                                  columns=["sample_id", "label", "d_train", "d_synth"]).to_pandas()
        ids, images = tables.read_samples(self.study_dir, unit.K, unit.seed, "eval", unit.axis, unit.axis.seen(self.cfg))
        return items.select(self.cfg, self.dataset, unit, labels, ids, images, c.per_label, c.train, c.held_out, salt)

    def write(self, name: str, part: str, cols: dict, unit, meta) -> None:
        """A part of ``name``, the unit's axis columns added to the rows ``cols`` computed."""
        tables.write_part(self.study_dir, name, part, tables.to_table(
            name, {**cols, **axes.columns(self.cfg, unit.axis, len(cols["K"]))}, meta))


class BasinActor(UnitActor):
    def unit(self, unit, meta, part) -> int:
        from ..compute import basins  # torch: imported in the actor, not by every `raystudy` command
        from ..metrics import get_metric

        c = self.cfg.basins
        metric, axis, k, s = unit.metric, unit.axis, unit.K, unit.seed
        chosen = self.read_items(unit, c, BASINS_SALT)
        metric_fn = basins.metric_fn_from_embedding(get_metric(c.metric, self.cfg.knn.weights_dir))
        model = self.model(k, s, axis)
        # The circle's score model is a VE SDE sampled by Euler-Maruyama: its items recover the same way.
        recovery = basins.VERecovery(model, self.cfg.model.sigma_max) if self.family.ve else None
        out = basins.basins_group(model, self.schedule(axis), c, chosen, metric_fn, self.device,
                                  K=k, seed=s, metric=metric, recovery=recovery)
        for name in ("basin_rates", "basin_trials", "basins"):  # `basins` last: it says the unit is done
            self.write(name, part, out[name], unit, meta)
        return len(chosen["kind"])


def run_units(stage, cfg, study_dir, todo, actor, workers: int) -> None:
    """One Ray Data row per unit of ``todo``; each actor call writes its unit's parts."""
    import ray

    metas = {stage.part(u): stage.meta(cfg, u) for u in todo}
    rows = []
    for u in todo:
        rows.append({"metric": u.metric, "K": u.K, "seed": u.seed, "base": stage.part(u), **axis_task(u.axis)})
    ray_data_output()
    ds = ray.data.from_items(rows, override_num_blocks=len(todo))
    ds = ds.map_batches(actor, fn_constructor_kwargs={"cfg_dict": cfg.to_dict(), "study_dir": str(study_dir)},
                        fn_kwargs={"metas": metas}, batch_size=1, batch_format="numpy",
                        **pool(workers, cfg.generate.cpus_per_worker, cfg.generate.gpus_per_worker))
    shown, done = progress.Progress(stage.name, len(todo), "units"), 0
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        done += len(b["K"])
        shown.update(len(b["K"]))
    if done != len(todo):
        raise RuntimeError(f"{stage.name} finished {done} of {len(todo)} units")


def run_basins(stage, cfg, study_dir, todo) -> None:
    run_units(stage, cfg, study_dir, todo, BasinActor, cfg.basins.workers)
