"""A dataset's official archive, checked and unpacked into the folder its loader reads.

Nothing is downloaded: the user fetches the archive where there is internet and copies it
where the study runs (on a cluster, onto the shared volume). ``unpack_cifar10`` checks the
archive's MD5 before reading it, extracts with tarfile's ``"data"`` filter (no member may land
outside the target, no links out of it, no device files), and moves the finished folder into
place with one rename, so a reader never sees half a dataset and an interrupted run leaves
only a hidden temporary folder that the next run does not look at.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from ..errors import ArchiveError, one_line

CIFAR10_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # the one the page above publishes
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    # usedforsecurity=False: MD5 here detects a wrong or partial download, and FIPS-mode
    # Pythons refuse MD5 unless told so.
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def unpack_cifar10(archive: str | os.PathLike, to: str | os.PathLike, md5: str | None = None) -> Path:
    """Check ``archive`` (``cifar-10-python.tar.gz``) against ``md5`` (default: the official
    one) and unpack it into ``to/cifar-10-batches-py`` (an existing one is replaced), the
    layout ``files.cifar10`` reads with ``data.path: to``. Returns that folder."""
    archive, to = Path(archive).expanduser(), Path(to).expanduser()
    md5 = (md5 or CIFAR10_MD5).lower()
    if not re.fullmatch(r"[0-9a-f]{32}", md5):
        raise ArchiveError(f"the expected MD5 {md5!r} is not 32 hexadecimal digits")
    if not archive.is_file():
        raise ArchiveError(f"{archive} does not exist: download {CIFAR10_ARCHIVE} from {CIFAR10_PAGE} "
                           f"and give its path")
    got = md5sum(archive)
    if got != md5:
        raise ArchiveError(f"{archive} has MD5 {got}, expected {md5}: a partial download or another file; "
                           f"download {CIFAR10_ARCHIVE} again from {CIFAR10_PAGE}")
    if not hasattr(tarfile, "data_filter"):  # Python 3.11.0-3.11.3 lack the extraction filters
        raise ArchiveError("safe extraction needs tarfile's filter='data' (Python >= 3.11.4)")
    try:
        to.mkdir(parents=True, exist_ok=True)
        # In the target folder, so the final move is a rename on one file system.
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-cifar10-", dir=to))
    except OSError as e:
        raise ArchiveError(f"cannot write in {to}: {one_line(e)}") from None
    try:
        try:
            with tarfile.open(archive, "r:gz") as tf:
                tf.extractall(tmp / "new", filter="data")
        except tarfile.FilterError as e:
            raise ArchiveError(f"{archive} holds a member that is unsafe to extract, refused: {one_line(e)}") from None
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ArchiveError(f"extracting {archive} into {to} failed ({type(e).__name__}: {one_line(e, 120)})") from None
        src = tmp / "new" / CIFAR10_FOLDER
        missing = [f"{CIFAR10_FOLDER}/{b}" for b in CIFAR10_BATCHES if not (src / b).is_file()]
        if missing:
            raise ArchiveError(f"{archive} lacks {', '.join(missing)}: not the CIFAR-10 python version "
                               f"({CIFAR10_ARCHIVE} from {CIFAR10_PAGE})")
        dest = to / CIFAR10_FOLDER
        try:
            if dest.exists():  # set aside, deleted with the temporary folder below
                os.replace(dest, tmp / "old")
            os.replace(src, dest)
        except OSError as e:
            raise ArchiveError(f"cannot move the unpacked batches to {dest}: {one_line(e)}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
