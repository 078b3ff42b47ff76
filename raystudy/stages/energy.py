"""The energy stage: relative energies of each (metric, K, seed)'s items (samples, training and
held-out images) against the
K's references (``raystudy.items``), one Ray Data actor call per unit, which computes them
with ``energy.energy_group`` and writes the unit's ``energy`` part itself."""

from __future__ import annotations

from .. import axes, items
from .basins import UnitActor, run_units

ENERGY_SALT = 0xE6


class EnergyActor(UnitActor):
    def unit(self, unit, meta, part) -> int:
        from .. import energy  # torch: imported in the actor, not by every `raystudy` command

        c = self.cfg.energy
        metric, axis, k, s = axes.split_unit(unit)
        xs = items.select(self.cfg, self.study_dir, self.dataset, unit, c.per_label, c.train, c.held_out, ENERGY_SALT)
        refs = items.references(self.cfg, self.dataset, k, axis)
        sched = self.schedule(axis)
        cols = energy.energy_group(self.model(k, s, axis), sched.alphas_cumprod, sched.betas, c, xs, refs, K=k, seed=s,
                                   device=self.device)
        self.write("energy", part, cols, unit, meta)
        return len(xs["kind"])


def run_energy(stage, cfg, study_dir, todo) -> None:
    run_units(stage, cfg, study_dir, todo, EnergyActor, cfg.basins.workers)
