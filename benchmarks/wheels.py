"""Download here the wheels that benchmarks/device.py installs on a GPU box (``--wheels DIR``).

    python benchmarks/wheels.py /work/wheels312             # Python 3.12, manylinux x86_64
    python benchmarks/wheels.py /work/wheels312 --ray       # also Ray (not needed by the check)
    python benchmarks/wheels.py /work/wheels312 --verify    # only check a folder made before

The box has Python 3.12 with torch, torchvision and accelerate; the check imports more
(device.py's ``NEEDED``: diffusers, faiss-cpu, lpips, pyarrow, pydantic, scikit-learn, pandas,
matplotlib, ...). What to carry is computed from this environment's installed metadata: those
distributions and everything they require (markers evaluated for CPython 3.12 on Linux), minus
what torch, torchvision and accelerate already bring to the box (their own requirements), each at
the version installed here (the project's constraints.txt pins). The folder gets one wheel per
distribution (``pip download --no-deps --only-binary=:all:`` for cp312 manylinux x86_64) and a
``requirements.txt`` naming them; device.py installs the ones the box lacks with ``--no-deps``,
so pip never tries to resolve (and fetch) torch on a box with no index.

``--verify`` checks a folder: every wheel's own Requires-Dist (for 3.12) is met by a wheel in the
folder or by what the box brings, and each wheel is for cp312 / abi3 / pure Python on manylinux
x86_64. Prints the file list and the total size.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from device import NEEDED  # noqa: E402  (what the check imports beyond the box's torch stack)

BOX = ("torch", "torchvision", "accelerate")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
ENV = {"python_version": "3.12", "python_full_version": "3.12.0", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
       "platform_machine": "x86_64", "os_name": "posix", "extra": ""}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requires(reqs) -> list:
    """The requirements that hold on CPython 3.12 / Linux x86_64, without extras."""
    from packaging.requirements import Requirement

    out = []
    for r in reqs or ():
        req = Requirement(r)
        if req.marker is None or req.marker.evaluate(ENV):
            out.append(req)
    return out


def closure(roots) -> dict[str, str]:
    """Installed distributions reached from ``roots`` (names) through their requirements: name -> version."""
    seen, todo = {}, [norm(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is required but not installed here: install the project's environment first") from None
        seen[name] = dist.version
        todo += [norm(r.name) for r in requires(dist.requires)]
    return seen


def carry(with_ray: bool) -> dict[str, str]:
    box = closure(BOX)
    roots = sorted(set(NEEDED.values()) | ({"ray"} if with_ray else set()))
    return {n: v for n, v in sorted(closure(roots).items()) if n not in box}


def download(folder: Path, pins: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    req = folder / "requirements.txt"
    req.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none",
           *[x for p in PLATFORMS for x in ("--platform", p)], "-d", str(folder), "-r", str(req)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def wheel_meta(path: Path):
    """A wheel's METADATA headers (Requires-Dist, ...)."""
    from email.parser import Parser

    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(z.read(name).decode())


def _fits(tag) -> bool:
    """Whether CPython 3.12 on manylinux x86_64 installs a wheel with this tag."""
    py = (tag.interpreter == "cp312" and tag.abi in ("cp312", "abi3", "none")) \
        or (tag.abi == "abi3" and re.fullmatch(r"cp3\d+", tag.interpreter) and int(tag.interpreter[3:]) <= 12) \
        or (tag.interpreter in ("py3", "py312") and tag.abi == "none")
    return bool(py) and (tag.platform == "any" or re.fullmatch(r"manylinux(1|2010|2014|_2_\d+)_x86_64", tag.platform))


def verify(folder: Path) -> list[str]:
    """Problems with the folder (empty: every requirement met, every wheel fits the box)."""
    from packaging.utils import parse_wheel_filename
    from packaging.version import Version

    problems, have = [], {}
    wheels = sorted(folder.glob("*.whl"))
    for w in wheels:
        name, ver, _, tags = parse_wheel_filename(w.name)
        have[norm(name)] = Version(str(ver))
        if not any(_fits(t) for t in tags):
            problems.append(f"{w.name}: not a CPython 3.12 manylinux x86_64 wheel")
    box = closure(BOX)
    for w in wheels:
        meta = wheel_meta(w)
        for r in requires(meta.get_all("Requires-Dist")):
            n = norm(r.name)
            if n in have:
                if r.specifier and have[n] not in r.specifier:
                    problems.append(f"{w.name} needs {r}, the folder has {n} {have[n]}")
            elif n not in box:
                problems.append(f"{w.name} needs {r}: neither in the folder nor brought by {', '.join(BOX)}")
    listed = {norm(line.split("==")[0]) for line in (folder / "requirements.txt").read_text().split()} \
        if (folder / "requirements.txt").exists() else set()
    problems += [f"requirements.txt names {n}, no wheel for it" for n in sorted(listed - set(have))]
    return problems


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="where the wheels go (outside the checkout)")
    p.add_argument("--ray", action="store_true", help="also Ray and its requirements (the check itself needs none)")
    p.add_argument("--verify", action="store_true", help="only check the folder")
    args = p.parse_args(argv)
    if not args.verify:
        download(args.folder, carry(args.ray))
    problems = verify(args.folder)
    files = sorted(args.folder.glob("*.whl"))
    total = sum(f.stat().st_size for f in files)
    for f in files:
        print(f"{f.stat().st_size / 2**20:8.1f} MiB  {f.name}")
    print(f"{len(files)} wheels, {total / 2**20:.1f} MiB in {args.folder}")
    for pr in problems:
        print("PROBLEM:", pr)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
