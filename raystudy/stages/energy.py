"""The energy stage: relative energies of each (metric, K, seed)'s items (samples, training and
held-out images) against the
K's references (``raystudy.compute.items``), one Ray Data actor call per unit, which computes them
with ``energy.energy_group`` and writes the unit's ``energy`` part itself."""

from __future__ import annotations

from ..compute import items
from ..splits import ENERGY_SALT
from .basins import UnitActor, run_units


class EnergyActor(UnitActor):
    def unit(self, unit, meta, part) -> int:
        from ..compute import energy  # torch: imported in the actor, not by every `raystudy` command

        c = self.cfg.energy
        axis, k, s = unit.axis, unit.K, unit.seed
        xs = self.read_items(unit, c, ENERGY_SALT)
        refs = items.references(self.cfg, self.dataset, k, axis)
        sched = self.schedule(axis)
        model, t = self.model(k, s, axis), None
        if self.family.ve:
            # The circle's VE score at t in thousandths of its time (t = 0: its smallest time, t_min);
            # its reverse-SDE drift is -g^2 s with g = sigma_max (no drift in x).
            m = self.cfg.model
            model = energy.ScoreFunction(model, drift_beta=m.sigma_max ** 2, drift_x=0.0)
            t = max(c.t / 1000, m.t_min)
        cols = energy.energy_group(model, sched.alphas_cumprod, sched.betas, c, xs, refs, K=k, seed=s,
                                   device=self.device, t=t)
        self.write("energy", part, cols, unit, meta)
        return len(xs["kind"])


def run_energy(stage, cfg, study_dir, todo) -> None:
    run_units(stage, cfg, study_dir, todo, EnergyActor, cfg.basins.workers)
