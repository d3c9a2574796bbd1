"""cli.table: cutting cells and aligning columns for the operator commands (no I/O)."""

from __future__ import annotations

from cli.table import aligned, cut


def test_cut_keeps_the_start_or_both_ends_within_the_width():
    assert cut("short", 10) == "short"
    assert cut("abcdefghij", 8) == "abcde..."
    assert cut("arn:aws:s3:::bucket/key", 12, keep_end=True) == "arn:...t/key"
    assert len(cut("x" * 50, 11, keep_end=True)) == 11


def test_aligned_pads_columns_and_prefixes_marks():
    rows = [["A", "LONG HEADER"], ["value", "x"]]
    assert aligned(rows) == ["A      LONG HEADER", "value  x"]
    assert aligned(rows, marks=[" ", "!"]) == ["  A      LONG HEADER", "! value  x"]
    assert aligned([]) == []
