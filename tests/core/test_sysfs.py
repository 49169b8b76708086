"""core/sysfs.py: the one defensive reader of /proc and /sys, on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench_agent.core.sysfs import list_dir, parse_cache_size, read_int, read_line, read_text


def test_readers_give_the_value(tmp_path: Path) -> None:
    (tmp_path / "speed").write_text("100000\n")
    assert read_text(tmp_path / "speed") == "100000\n"
    assert read_line(tmp_path / "speed") == "100000"
    assert read_int(tmp_path / "speed") == 100000


def test_a_file_that_cannot_be_read_is_none(tmp_path: Path) -> None:
    (tmp_path / "a_dir").mkdir()  # reading it raises IsADirectoryError
    for path in (tmp_path / "missing", tmp_path / "a_dir"):
        assert read_text(path) is None
        assert read_line(path) is None
        assert read_int(path) is None


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"),
                                   OSError(22, "Invalid argument")])
def test_a_file_the_kernel_refuses_to_read_is_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError) -> None:
    # EACCES (a mode-000 file; root reads those, so the refusal is raised here, as
    # it is for a non-root agent) and the EINVAL a sysfs show function returns.
    path = tmp_path / "secret"
    path.write_text("1\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise error

    monkeypatch.setattr(Path, "read_text", refuse)
    assert (read_text(path), read_line(path), read_int(path)) == (None, None, None)


def test_bytes_that_are_not_utf8_do_not_hide_the_line(tmp_path: Path) -> None:
    (tmp_path / "model").write_bytes(b"SAMSUNG \xff MZQL2   \n")
    assert read_line(tmp_path / "model") == "SAMSUNG \ufffd MZQL2"


@pytest.mark.parametrize("text", ["-1\n", "  42  \n", "0"])
def test_read_int_reads_signed_integers(tmp_path: Path, text: str) -> None:
    (tmp_path / "n").write_text(text)
    assert read_int(tmp_path / "n") == int(text)


@pytest.mark.parametrize("text", ["", "\n", "up\n", "1.5\n", "0x10\n"])
def test_read_int_of_no_integer_is_none(tmp_path: Path, text: str) -> None:
    (tmp_path / "n").write_text(text)
    assert read_int(tmp_path / "n") is None


def test_list_dir_sorted_and_empty_when_missing(tmp_path: Path) -> None:
    for name in ("nvme1n1", "loop0", "nvme0n1"):
        (tmp_path / name).mkdir()
    assert list_dir(tmp_path) == ["loop0", "nvme0n1", "nvme1n1"]
    assert list_dir(tmp_path / "missing") == []
    (tmp_path / "file").write_text("")
    assert list_dir(tmp_path / "file") == []  # NotADirectoryError


@pytest.mark.parametrize(
    ("text", "expected"),
    [("32768K", 32768 * 1024), ("48K\n", 48 * 1024), (" 2M ", 2 * 1024**2),
     ("1G", 1024**3), ("512", 512), (None, None), ("", None), ("32 KB", None),
     ("-1K", None), ("lots", None)],
)
def test_parse_cache_size(text: str | None, expected: int | None) -> None:
    assert parse_cache_size(text) == expected
