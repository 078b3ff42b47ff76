"""Synthetic study folders for the analysis tests, written table by table by
raystudy.analysis.synthetic (seconds, no training, no Ray). Module-scoped: the report test
writes its report into ``study``, so each test file gets its own copy."""

import pytest

from raystudy.analysis import synthetic

KS = (2, 8, 32, 128, 512)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return synthetic.write_study(tmp_path_factory.mktemp("an") / "small-unet", ks=KS, seeds=(0, 1), n=40,
                                 k_half=40, basins=True)


@pytest.fixture(scope="module")
def study2(tmp_path_factory):
    return synthetic.write_study(tmp_path_factory.mktemp("an") / "large-unet", ks=KS, seeds=(0,), n=40,
                                 k_half=160, seed=1, train_log=False, stages=False)


@pytest.fixture(scope="module")
def axes_study(tmp_path_factory):
    """A study with a snapshot, a second variant and a twin model. The main model (variant base,
    the config's first, at its final snapshot, twin 0) is a synthetic study crossing 1/2 at
    K = 40 with 40 samples per (K, seed); each other checkpoint is another one crossing at K = 3
    with 20, so a curve pooled over all four crosses near K = 5, and pooling by samples is not
    averaging the rows. Returns (folder, the main model's labels, its fractions), read before
    the other checkpoints were written: the main model selected by construction."""
    import yaml

    from raystudy import tables

    root = tmp_path_factory.mktemp("axes")
    d = synthetic.write_study(root / "phase-unet", ks=KS, seeds=(0, 1), n=40, k_half=40, train_log=False,
                              stages=False)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    (d / "config.yaml").write_text(yaml.safe_dump({**cfg, "variants": {"base": {}, "small": {}}}, sort_keys=False))
    main = {t: tables.read_pandas(d, t) for t in ("labels", "fractions")}
    other = synthetic.write_study(root / "other", ks=KS, seeds=(0, 1), n=20, k_half=3, seed=1, train_log=False,
                                  stages=False)
    for t in ("labels", "fractions"):
        df = tables.read_pandas(other, t)
        for i, (variant, twin, seen) in enumerate((("base", 0, 1024), ("small", 0, cfg["train"]["images"]),
                                                   ("base", 1, cfg["train"]["images"]))):
            cols = {c: df[c].to_numpy() for c in tables.SCHEMAS[t].names}
            cols.update(variant=[variant] * len(df), twin=[twin] * len(df), images_seen=[seen] * len(df))
            tables.write_part(d, t, f"checkpoint{i}", tables.to_table(t, cols))
    return d, main["labels"], main["fractions"]


@pytest.fixture(scope="module")
def variant_first_study(tmp_path_factory):
    """A study whose config lists the variant ``small`` before ``base``: the main model is small
    at its final model (images_seen = train.images, twin 0), a synthetic study crossing 1/2 at
    K = 40 with 40 samples per (K, seed). The other checkpoints cross at K = 3 with 20: base's
    final model (what a guess by the name ``base`` picks), small's snapshot at 1024 images and
    its twin. Returns (folder, the main model's labels, its fractions), read from a folder of
    their own: the main model selected by construction."""
    import yaml

    from raystudy import tables

    root = tmp_path_factory.mktemp("variant-first")
    main_dir = synthetic.write_study(root / "main", ks=KS, seeds=(0, 1), n=40, k_half=40, train_log=False,
                                     stages=False)
    d = synthetic.write_study(root / "phase-unet", ks=KS, seeds=(0, 1), n=20, k_half=3, seed=1, train_log=False,
                              stages=False)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    (d / "config.yaml").write_text(yaml.safe_dump({**cfg, "variants": {"small": {}, "base": {}}}, sort_keys=False))
    final = cfg["train"]["images"]
    main = {t: tables.read_pandas(main_dir, t) for t in ("labels", "fractions")}
    for t in ("labels", "fractions"):
        # the folder's own parts are base's final model (variant base, images_seen null)
        other = tables.read_pandas(d, t)
        for part, df, (twin, seen) in (("small", main[t], (0, final)), ("small.i1024", other, (0, 1024)),
                                       ("small.twin", other, (1, final))):
            cols = {c: df[c].to_numpy() for c in tables.SCHEMAS[t].names if c not in ("variant", "twin", "images_seen")}
            cols.update(variant=["small"] * len(df), twin=[twin] * len(df), images_seen=[seen] * len(df))
            tables.write_part(d, t, part, tables.to_table(t, cols))
    return d, main["labels"], main["fractions"]
