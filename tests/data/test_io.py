"""bigmodel._io: atomic writes (the file appears whole or not at all, with a normal file mode), and
reads of text and TOML files whose errors name the file in the caller's error type."""

from __future__ import annotations

import os
import stat

import pytest

from bigmodel import _io


def test_written_file_has_a_plain_open_mode(tmp_path):
    old = os.umask(0o022)
    try:
        _io.write_text(tmp_path / "a.txt", "hello")
        os.umask(0o077)
        _io.write_text(tmp_path / "b.txt", "hello")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644  # not mkstemp's 0600
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "ckpt.bin"
    _io.write_bytes(target, b"old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        _io.write_with(target, boom)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.bin"]


class _Bad(ValueError):
    pass


def test_read_text_and_parse_toml_name_the_file_in_the_callers_error(tmp_path):
    good = tmp_path / "s.toml"
    good.write_text('a = 1\n[t]\nb = "x"\n', encoding="utf-8")
    assert _io.parse_toml(_io.read_text(good, "suite file", _Bad), good, _Bad) == {"a": 1, "t": {"b": "x"}}
    with pytest.raises(_Bad, match="nope.toml: suite file not found"):
        _io.read_text(tmp_path / "nope.toml", "suite file", _Bad)
    with pytest.raises(_Bad, match=f"{tmp_path}: cannot read the suite file"):
        _io.read_text(tmp_path, "suite file", _Bad)  # a folder
    (tmp_path / "latin.toml").write_bytes(b"a = 'caf\xe9'\n")
    with pytest.raises(_Bad, match="latin.toml: cannot read the suite file \\(.*utf-8"):
        _io.read_text(tmp_path / "latin.toml", "suite file", _Bad)
    with pytest.raises(_Bad, match="s.toml: invalid TOML \\(") as exc:
        _io.parse_toml("a = \n", good, _Bad)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__
