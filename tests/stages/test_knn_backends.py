"""The knn stage's two search backends on a real local Ray."""

import numpy as np
import pytest

from tests.conftest import TINY


@pytest.mark.slow
def test_study_knn_backends_agree_and_gpus_are_booked(tmp_path, ray_local):
    """A real (local Ray) study searched with knn.backend=torch writes the neighbours the
    FAISS backend writes; knn.gpus_per_worker is booked: on a cluster without GPUs it is
    refused in one line before any work."""

    from raystudy import tables
    from raystudy.config import load_config
    from raystudy.errors import ClusterError
    from raystudy.study import run

    tiny = TINY
    base = ["model.type=empirical", "generate.n_samples=40", "generate.part_size=16", "knn.batch_size=7"]
    got = {}
    for backend in ("faiss", "torch"):
        run(load_config(tiny, [*base, f"knn.backend={backend}"]), tmp_path / backend, echo=lambda s: None)
        got[backend] = tables.read_pandas(tmp_path / backend, "neighbors").sort_values(
            ["K", "seed", "sample_id"]).reset_index(drop=True)
    assert len(got["faiss"]) == 2 * 40
    for c in ("train_idx", "synth_idx", "train_dist", "synth_dist"):
        np.testing.assert_array_equal(np.stack(got["torch"][c]), np.stack(got["faiss"][c]))
    with pytest.raises(ClusterError, match="cannot hold one knn worker needing 1 CPU and 0.5 GPU") as e:
        run(load_config(tiny, [*base, "knn.gpus_per_worker=0.5"]), tmp_path / "gpu", echo=lambda s: None)
    assert "\n" not in str(e.value) and not (tmp_path / "gpu" / "tables").exists()
