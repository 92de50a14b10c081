"""Line numbers are the lines an editor shows, whatever the file's line endings."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.feeds import Format, Kind
from ceir.feeds.kinds import feed_for
from ceir.feeds.reader import FeedReader

_FIELD = st.text(st.characters(min_codepoint=ord("a"), max_codepoint=ord("z")), max_size=5)


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(st.one_of(st.just(None), st.lists(_FIELD, min_size=4, max_size=4)), max_size=12),
    ending=st.sampled_from(["\n", "\r\n", "\r\r\n"]),
    fmt=st.sampled_from([Format.CSV, Format.JSONL]),
)
def test_reader_numbers_rows_by_the_lines_an_editor_shows(
    rows: list[list[str] | None], ending: str, fmt: Format
) -> None:
    """LF, CRLF and CR CR LF files give each row the number of its line counted by LF
    (blank lines, None here, count as lines and give no row)."""
    feed = feed_for(Kind.TAC)
    text = [",".join(feed.fields)] if fmt is Format.CSV else []
    expected = []
    for row in rows:
        if row is None or not any(row):
            text.append("")
            continue
        if fmt is Format.CSV:
            text.append(",".join(row))
        else:
            text.append(json.dumps(dict(zip(feed.fields, row, strict=True))))
        expected.append((len(text), row))
    if fmt is Format.JSONL and not expected:
        text.append('{"tac": ""}')
        expected.append((len(text), ["", "", "", ""]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feed"
        path.write_bytes((ending.join(text) + ending).encode())
        got = list(FeedReader(path, feed, fmt).rows())
    assert got == expected
