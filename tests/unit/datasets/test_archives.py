"""`raystudy unpack cifar10`: an archive with the official member names, checked by MD5 and
unpacked safely into the layout ``files.cifar10`` reads; every refusal is one line, exit 2."""

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest

from raystudy import cli
from raystudy.datasets import archives, files

FOLDER = "cifar-10-batches-py"


def _add(tf: tarfile.TarFile, name: str, data: bytes = b"", **info) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    for k, v in info.items():
        setattr(ti, k, v)
    tf.addfile(ti, io.BytesIO(data) if data else None)


def _batch(rng, n: int) -> tuple[np.ndarray, bytes]:
    """A batch in CIFAR-10's python format: a dict of bytes keys, uint8 rows of 3,072 pixels."""
    x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return x, pickle.dumps({b"batch_label": b"tiny", b"labels": list(rng.integers(0, 10, n)), b"data": x})


def make_archive(path, skip=(), extra=()) -> tuple[np.ndarray, np.ndarray, str]:
    """A tar.gz laid out like cifar-10-python.tar.gz; (train pixels, test pixels, its MD5)."""
    rng = np.random.default_rng(0)
    train, test = [], None
    with tarfile.open(path, "w:gz") as tf:
        _add(tf, FOLDER, type=tarfile.DIRTYPE, mode=0o755)
        _add(tf, f"{FOLDER}/batches.meta", pickle.dumps({b"label_names": [b"airplane"]}))
        for i, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
            x, data = _batch(rng, 2 + i)
            if name in skip:
                continue
            if name == "test_batch":
                test = x
            else:
                train.append(x)
            _add(tf, f"{FOLDER}/{name}", data)
        for name, info in extra:
            _add(tf, name, b"" if info.get("type") == tarfile.SYMTYPE else b"evil", **info)
    md5 = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    return np.concatenate(train), test, md5


def pixels(x: np.ndarray) -> np.ndarray:
    assert x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    return np.rint((x.astype(np.float64) + 1) * 127.5).astype(np.uint8)


def cifar_pixels(to, idx) -> np.ndarray:
    """Images ``idx`` of the CIFAR-10 dataset at ``to``, as a study reads them, back to bytes."""
    from raystudy.config import DataSection
    from raystudy.datasets import load_dataset

    return pixels(load_dataset(DataSection(name="cifar10", path=str(to))).get(idx))


def unpack(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main(["unpack", "cifar10", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def refused(capsys, *argv) -> str:
    rc, out, err = unpack(capsys, *argv)
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith("raystudy: error: "), (rc, out, err)
    return err


def test_unpacked_archive_loads_to_the_same_pixels(tmp_path, capsys):
    arc = tmp_path / "cifar-10-python.tar.gz"
    train, test, md5 = make_archive(arc)
    to = tmp_path / "data" / "cifar10"
    rc, out, err = unpack(capsys, arc, "--to", to, "--md5", md5)
    assert rc == 0 and err == "" and f"data.path={to}" in out
    # Only the finished folder is left: no temporary one beside it.
    assert sorted(p.name for p in to.iterdir()) == [FOLDER]
    assert sorted(p.name for p in (to / FOLDER).iterdir()) == sorted(
        ["batches.meta", "test_batch", *(f"data_batch_{i}" for i in range(1, 6))])
    x = files.cifar10(str(to))
    # The loader maps uint8 v to v / 127.5 - 1: back to bytes, exactly the archive's pixels (CHW rows),
    # the test batch after the training batches.
    both = np.concatenate([train, test]).reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(cifar_pixels(to, np.arange(len(both))), both)
    # Again (a re-run Job): the folder is replaced by the archive's, whatever was in it.
    (to / FOLDER / "data_batch_1").write_bytes(b"stale")
    assert unpack(capsys, arc, "--to", to, "--md5", md5.upper())[0] == 0
    np.testing.assert_array_equal(files.cifar10(str(to)), x)
    assert sorted(p.name for p in to.iterdir()) == [FOLDER]


def test_a_wrong_md5_is_one_line_and_unpacks_nothing(tmp_path, capsys):
    arc = tmp_path / "cifar-10-python.tar.gz"
    _, _, md5 = make_archive(arc)
    to = tmp_path / "data"
    err = refused(capsys, arc, "--to", to)  # the default: the official archive's MD5, not this one's
    assert f"MD5 {md5}, expected {archives.CIFAR10_MD5}" in err and archives.CIFAR10_PAGE in err
    assert not to.exists()
    assert "32 hexadecimal" in refused(capsys, arc, "--to", to, "--md5", "c58f30108f")
    assert "does not exist" in refused(capsys, tmp_path / "absent.tar.gz", "--to", to)


@pytest.mark.parametrize("name, info", [
    ("../../../evil", {}),                                                   # a path out of the target
    (f"{FOLDER}/link", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}),  # a link to an absolute path
    (f"{FOLDER}/up", {"type": tarfile.SYMTYPE, "linkname": "../../../.."}),  # a link out of the target
])
def test_a_member_escaping_the_target_is_refused(tmp_path, capsys, name, info):
    arc = tmp_path / "cifar-10-python.tar.gz"
    _, _, md5 = make_archive(arc, extra=[(name, info)])
    to = tmp_path / "data"
    err = refused(capsys, arc, "--to", to, "--md5", md5)
    assert "unsafe to extract" in err and name.rsplit("/", 1)[-1] in err
    # Nothing written outside the target (the first name, unfiltered, would land at tmp_path/evil),
    # nothing left inside it.
    assert not (tmp_path / "evil").exists() and list(to.iterdir()) == []


def test_an_archive_without_every_batch_is_refused(tmp_path, capsys):
    arc = tmp_path / "cifar-10-python.tar.gz"
    _, _, md5 = make_archive(arc, skip=("data_batch_3",))
    to = tmp_path / "data"
    err = refused(capsys, arc, "--to", to, "--md5", md5)
    assert f"lacks {FOLDER}/data_batch_3:" in err and "data_batch_2" not in err
    assert list(to.iterdir()) == []
    # Not a tar.gz at all, though its MD5 is the one given.
    arc.write_bytes(b"<html>404</html>")
    err = refused(capsys, arc, "--to", to, "--md5", hashlib.md5(arc.read_bytes(), usedforsecurity=False).hexdigest())
    assert "extracting" in err and list(to.iterdir()) == []


def test_the_loader_names_the_command_and_the_cli_the_official_md5(tmp_path):
    with pytest.raises(files.DataError) as e:
        files.cifar10(str(tmp_path))
    assert "cifar-10-batches-py" in str(e.value) and "raystudy unpack cifar10" in str(e.value)
    # The official MD5 of the page, the CLI's default (its help names where it lives).
    assert archives.CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"
    assert cli.build_parser().parse_args(["unpack", "cifar10", "a.tar.gz", "--to", "d"]).md5 is None
    assert "raystudy.datasets.archives.CIFAR10_MD5" in " ".join(cli.build_parser()._subparsers._group_actions[0]
                                                              .choices["unpack"].format_help().split())
