"""A tiny real study records what made it (provenance.json), and its report shows it; two
studies compared show exactly the fields where their provenance differs."""

import json
import platform
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY

ARGV = ["raystudy", "run", str(TINY), "--study", "s", "--set", "model.type=empirical"]


pytestmark = pytest.mark.slow  # runs whole (tiny) studies


@pytest.fixture(scope="module")
def study(tmp_path_factory, ray_local):
    import matplotlib

    matplotlib.use("Agg")
    from raystudy import provenance
    from raystudy.config import load_config
    from raystudy.study import run

    out = tmp_path_factory.mktemp("prov") / "s"
    cfg = load_config(TINY, ["model.type=empirical", "generate.n_samples=4", "ks=[3]"])
    argv = sys.argv
    sys.argv = ARGV
    try:
        run(cfg, out, echo=lambda *a: None)
        first = provenance.read(out)
        run(cfg, out, echo=lambda *a: None)  # a finished study: nothing to do, still a run
    finally:
        sys.argv = argv
    return out, first


def _git(*args) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_a_study_records_what_made_it(study):
    import diffusers
    import faiss
    import ray
    import torch

    out, first = study
    (rec,) = first
    runs = json.loads((out / "provenance.json").read_text())["runs"]
    assert len(runs) == 2 and runs[0] == rec  # appended, the first record untouched
    v = rec["versions"]
    assert v["torch"] == torch.__version__.split("+")[0] and v["ray"] == ray.__version__
    assert v["diffusers"] == diffusers.__version__ and v["faiss"] == faiss.__version__
    assert rec["python"] == "%d.%d.%d" % sys.version_info[:3]
    # The checkout the package runs from (the tests always run from one).
    assert rec["git"]["commit"] == _git("rev-parse", "HEAD")
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "HEAD", "--quiet"]).returncode != 0
    assert rec["git"]["dirty"] is dirty and rec["git"]["source"] == "checkout"
    hw = rec["hardware"]
    lscpu = shutil.which("lscpu")
    if lscpu:
        model = next(ln.split(":", 1)[1].strip() for ln in subprocess.run([lscpu], capture_output=True, text=True)
                     .stdout.splitlines() if ln.startswith("Model name"))
        assert hw["cpu"] == model
    assert hw["machine"] == platform.machine()
    assert hw["ray_cluster"]["cpus"] == ray.cluster_resources()["CPU"] and hw["ray_cluster"]["nodes"] == 1
    assert rec["command"] == " ".join(ARGV)


def test_an_installed_copy_inside_another_repository_claims_no_commit(tmp_path):
    # A venv inside some checkout: the package's folder is in a git work tree, not its own.
    site = tmp_path / "repo" / ".venv" / "site-packages"
    shutil.copytree(ROOT / "raystudy", site / "raystudy", ignore=shutil.ignore_patterns("__pycache__"))
    repo = ["git", "-C", str(tmp_path / "repo"), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    (tmp_path / "repo" / "README").write_text("another project\n")
    subprocess.run([*repo, "add", "README"], check=True)
    subprocess.run([*repo, "commit", "-qm", "another project"], check=True)
    def state(**env):
        p = subprocess.run([sys.executable, "-c", "from raystudy.provenance import git_state; print(git_state())"],
                           env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", **env}, cwd=tmp_path,
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    assert state() == "None"
    # An image's installed copy: the commit its build arguments put in the environment, not the other repository's.
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert state(RAYSTUDY_GIT_COMMIT=commit, RAYSTUDY_GIT_DIRTY="false") == \
        str({"commit": commit, "dirty": False, "source": "RAYSTUDY_GIT_COMMIT"})


def test_report_shows_provenance_and_where_two_studies_differ(study, tmp_path):
    from raystudy.analysis.report import write_report

    out, _ = study
    page = write_report([out], tmp_path / "one", n_boot=20, echo=lambda *a: None).read_text()
    section = page[page.index("id='provenance'"):page.index("id='config'")]
    rec = json.loads((out / "provenance.json").read_text())["runs"][-1]
    assert rec["git"]["commit"] in section and rec["versions"]["torch"] in section and "of 2 run(s)" in section
    assert "did not all use" not in section  # both runs: same software and hardware
    # The same study as made with another torch on another host at another time: only torch differs.
    other = tmp_path / "other"
    shutil.copytree(out, other)
    data = json.loads((other / "provenance.json").read_text())
    for r in data["runs"]:
        r["versions"]["torch"], r["host"], r["written"] = "2.13.0", "elsewhere", "2030-01-01T00:00:00Z"
    (other / "provenance.json").write_text(json.dumps(data))
    cfg = (other / "config.yaml").read_text().replace("name: tiny", "name: tiny-other")
    (other / "config.yaml").write_text(cfg)
    page = write_report([out, other], tmp_path / "two", n_boot=20, echo=lambda *a: None).read_text()
    diff = page[page.index("Where the studies"):page.index("id='config'")]
    rows = diff[diff.index("<tbody>"):diff.index("</tbody>")].count("<tr>")
    assert rows == 1 and "versions.torch" in diff and "2.13.0" in diff and rec["versions"]["torch"] in diff
    assert "elsewhere" not in diff and "2030" not in diff
