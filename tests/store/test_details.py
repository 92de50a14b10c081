"""``details`` values with identity tokens: stored as their 16 bytes, read back as text."""

from __future__ import annotations

import datetime
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.store import open_store
from ceir.store.details import Details, encode, token_values
from ceir.store.tables import SEP, pack_fields

tokens = st.binary(min_size=16, max_size=16).map(lambda t: "tok_" + t.hex())
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=SEP))
fields = st.lists(st.one_of(tokens, texts, st.dates().map(str)), min_size=1, max_size=6)


@settings(max_examples=300)
@given(fields)
def test_any_value_decodes_to_itself(values: list[str]) -> None:
    """Tokens, dates, other text, in any order (a field that only looks like a token,
    a date out of the 2-byte range): the stored form reads back as the value."""
    value = pack_fields(*values)
    assert Details(None, None, None)._whole(encode(value)) == value


@settings(max_examples=20)
@given(st.lists(fields, min_size=1, max_size=20))
def test_values_read_back_from_the_store(rows: list[list[str]]) -> None:
    """What is put is what ``get`` and ``of_device`` read, on the row-by-row writer."""
    values = {(i.to_bytes(8, "big"), 3): pack_fields(*v) for i, v in enumerate(rows)}
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "db") as store:
        store.write(lambda tables: tables.details.put(values))
        with store.snapshot() as tables:
            for (device, code), value in values.items():
                assert tables.details.get(device, code) == value
                assert list(tables.details.of_device(device)) == [(3, rows[device[-1]])]


def test_an_operator_dump_value_is_stored_in_36_bytes() -> None:
    """Two tokens and a date: 84 bytes of text, 36 stored (mark, head, 2 x 16, day)."""
    a, b = "tok_" + "ab" * 16, "tok_" + "0f" * 16
    text = pack_fields(a, b, "2019-05-01")
    stored = encode(text)
    assert len(text) == 84
    assert len(stored) == 36
    assert bytes.fromhex("ab" * 16) in stored
    assert encode(pack_fields(a.upper(), "x")) == pack_fields(a.upper(), "x")  # not a token


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(
            st.binary(min_size=16, max_size=16),
            st.binary(min_size=16, max_size=16),
            st.dates(datetime.date(1970, 1, 1), datetime.date(2149, 6, 6)),
        ),
        max_size=30,
    )
)
def test_bulk_values_equal_the_encoded_text(rows: list[tuple[bytes, bytes, datetime.date]]) -> None:
    """``token_values`` from arrays is byte for byte ``encode`` of the text values."""
    n = len(rows)
    tok = np.frombuffer(b"".join(a + b for a, b, _d in rows), np.uint8).reshape(n, 2, 16)
    epoch = datetime.date(1970, 1, 1)
    days = np.array([(d - epoch).days for _a, _b, d in rows], np.int64)
    want = [encode(pack_fields("tok_" + a.hex(), "tok_" + b.hex(), str(d))) for a, b, d in rows]
    assert token_values(tok, days) == want
