"""driftlab.atomic_io: replace-or-nothing writes, ENOSPC named, no temp left behind."""

import errno
import os

import pytest

from driftlab import atomic_io


def test_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a.json"
    atomic_io.write_json(path, {"x": 1})
    atomic_io.write_json(path, {"x": 2})
    assert path.read_text() == '{\n "x": 2\n}\n'
    assert os.listdir(tmp_path) == ["a.json"]


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    atomic_io.write_text(path, "old")

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_io.os, "fsync", full)
    with pytest.raises(atomic_io.DiskFullError) as info:
        atomic_io.write_text(path, "new text")
    assert "summary.json" in str(info.value) and "8 bytes" in str(info.value)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["summary.json"]


def test_interrupt_mid_write_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "config.json"

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic_io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_io.write_text(path, "x")
    assert os.listdir(tmp_path) == []
