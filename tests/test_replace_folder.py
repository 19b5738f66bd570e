"""`cmim_hf.saving.replace_folder`: a complete target folder exists at every instant of a replacement. On Linux
the two folders swap names in one step (renameat2 RENAME_EXCHANGE); elsewhere two renames and a recovery."""

import sys
from pathlib import Path

import pytest

from cmim_hf import saving
from cmim_hf.saving import replace_folder, restore_folder

LINUX_EXCHANGE = saving._renameat2() is not None


def _folder(path: Path, version: str) -> Path:
    path.mkdir()
    (path / "version.txt").write_text(version)
    return path


def _version(path: Path) -> str:
    return (path / "version.txt").read_text()


def test_exchange_swaps_two_folders(tmp_path):
    if not LINUX_EXCHANGE:
        pytest.skip("renameat2 is Linux-only")
    a, b = _folder(tmp_path / "a", "A"), _folder(tmp_path / "b", "B")
    if not saving._exchange(a, b):
        pytest.skip("this filesystem refuses RENAME_EXCHANGE")
    assert (_version(a), _version(b)) == ("B", "A")
    assert not saving._exchange(a, tmp_path / "missing")  # refused, nothing changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux-only")
def test_on_linux_the_replacement_is_one_exchange_and_final_is_never_missing(tmp_path, monkeypatch):
    """No rename runs (the exchange is the only step that touches `final`), and a kill right after it leaves the
    new `final` in place, the old version under the staging name for the next save to delete."""
    assert LINUX_EXCHANGE, "glibc >= 2.28 on Linux offers renameat2"
    final, staging = _folder(tmp_path / "final", "old"), _folder(tmp_path / ".final.tmp-1", "new")
    if not saving._exchange(final, staging) or not saving._exchange(final, staging):  # swapped there and back
        pytest.skip("this filesystem refuses RENAME_EXCHANGE")

    def no_rename(*args):
        raise AssertionError("replace_folder renamed instead of exchanging")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies between the exchange and the deletion of the old version

    monkeypatch.setattr(saving.os, "replace", no_rename)
    monkeypatch.setattr(saving.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        replace_folder(staging, final)
    assert _version(final) == "new" and _version(staging) == "old"
    monkeypatch.undo()
    assert restore_folder(final) is None  # nothing to put back: final is complete; the leftover is deleted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"] and _version(final) == "new"


def test_without_the_exchange_two_renames_and_a_failed_second_one_puts_final_back(tmp_path, monkeypatch):
    """Other systems (or a filesystem that refuses the exchange): final is moved aside, then the new one moves in;
    when the second rename fails, the aside copy moves back. (A kill between the two is recovered by
    restore_folder: tests/test_faults.py.)"""
    monkeypatch.setattr(saving, "_exchange", lambda a, b: False)
    final, staging = _folder(tmp_path / "final", "old"), _folder(tmp_path / ".final.tmp-1", "new")
    real_replace, calls = saving.os.replace, []

    def replace_then_die(source, destination):
        calls.append(Path(destination).name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # after final moved aside, before the new one moved in
        real_replace(source, destination)

    monkeypatch.setattr(saving.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        replace_folder(staging, final)
    monkeypatch.setattr(saving.os, "replace", real_replace)
    assert _version(final) == "old"  # the except branch moved the old one back
    replace_folder(staging, final)
    assert _version(final) == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["final"]
