"""The lakeFS binary lookup: explicit, cached, or a clear message on how to get one."""

import pytest

from dfp import stack


def test_no_go_and_no_binary_says_how_to_get_lakefs(tmp_path, monkeypatch):
    monkeypatch.setenv("DFP_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LAKEFS_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(stack.StackError) as err:
        stack.ensure_lakefs_binary(log=lambda msg: None)
    message = str(err.value)
    assert "no Go toolchain" in message
    assert "LAKEFS_BIN" in message
    assert "Go module proxy" in message


def test_explicit_binary_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEFS_BIN", str(tmp_path / "nope"))
    with pytest.raises(stack.StackError, match="does not exist"):
        stack.ensure_lakefs_binary()
    binary = tmp_path / "lakefs"
    binary.write_text("#!/bin/sh\n")
    monkeypatch.setenv("LAKEFS_BIN", str(binary))
    assert stack.ensure_lakefs_binary() == binary


def test_cached_binary_is_reused_without_building(tmp_path, monkeypatch):
    monkeypatch.delenv("LAKEFS_BIN", raising=False)
    monkeypatch.setenv("DFP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # a build would fail: no go
    cached = stack.lakefs_binary_path()
    cached.parent.mkdir(parents=True)
    cached.write_text("cached")
    assert stack.ensure_lakefs_binary() == cached
