"""benchmarks/wheels.py: what the device check carries, and its check of a wheel folder
(no download here: wheels are written by hand, real zip files with METADATA)."""

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import wheels  # noqa: E402


def _wheel(folder: Path, filename: str, requires=()) -> None:
    name, version = filename.split("-")[:2]
    with zipfile.ZipFile(folder / filename, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
                       name, version, "".join(f"Requires-Dist: {r}\n" for r in requires)))


def test_carries_the_check_s_needs_but_not_the_box_s_torch_stack():
    from importlib import metadata

    carried = wheels.carry(with_ray=False)
    box = wheels.closure(wheels.BOX)
    assert {"torch", "torchvision", "accelerate", "numpy"} <= set(box) and not set(carried) & set(box)
    assert {"diffusers", "lpips", "faiss-cpu", "pyarrow", "pydantic"} <= set(carried) and "ray" not in carried
    assert "ray" in wheels.carry(with_ray=True)
    # Each at the version installed here, and the carried set closed under requirements.
    assert all(metadata.version(n) == v for n, v in carried.items())
    for n in carried:
        for r in wheels.requires(metadata.distribution(n).requires):
            assert wheels.norm(r.name) in carried or wheels.norm(r.name) in box, (n, str(r))


def test_verify_finds_unmet_requirements_and_foreign_wheels(tmp_path):
    _wheel(tmp_path, "lpips-0.1.4-py3-none-any.whl", ["torch>=0.4", "scipy>=1.0", "tqdm>=4",
                                                      'pywin32; sys_platform == "win32"', "rich; extra == 'x'"])
    problems = wheels.verify(tmp_path)
    # torch and tqdm come with the box, the markers exclude the rest: only scipy is missing.
    assert len(problems) == 1 and "needs scipy>=1.0" in problems[0], problems
    _wheel(tmp_path, "scipy-0.9-cp312-cp312-manylinux_2_17_x86_64.whl")
    assert ["the folder has scipy 0.9" in p for p in wheels.verify(tmp_path)] == [True]
    (tmp_path / "scipy-0.9-cp312-cp312-manylinux_2_17_x86_64.whl").unlink()
    _wheel(tmp_path, "scipy-1.17.1-cp312-cp312-manylinux_2_17_x86_64.whl")
    _wheel(tmp_path, "faiss_cpu-1.15.1-cp310-abi3-manylinux_2_28_x86_64.whl")
    assert wheels.verify(tmp_path) == []
    _wheel(tmp_path, "pyarrow-26.0.1-cp311-cp311-manylinux_2_28_x86_64.whl")  # a 3.11 build
    _wheel(tmp_path, "regex-1.0-cp312-cp312-macosx_11_0_arm64.whl")
    (tmp_path / "requirements.txt").write_text("scipy==1.17.1\npandas==3.1.1\n")
    problems = wheels.verify(tmp_path)
    assert sorted(p.split(":")[0] for p in problems) == [
        "pyarrow-26.0.1-cp311-cp311-manylinux_2_28_x86_64.whl", "regex-1.0-cp312-cp312-macosx_11_0_arm64.whl",
        "requirements.txt names pandas, no wheel for it"], problems
