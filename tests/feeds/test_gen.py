"""The synthetic feed generator, and writer -> reader round trips."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.errors import FeedFormatError
from ceir.feeds import Format, Kind
from ceir.feeds.base import Options
from ceir.feeds.gen import POOL, device_imei, generate, rows, tac_entry, write_rows
from ceir.feeds.importer import import_file
from ceir.feeds.kinds import feed_for
from ceir.feeds.reader import FeedReader
from ceir.imei import parse
from ceir.store import open_store

from .conftest import ACTOR

DEVICE_KINDS = [k for k in Kind if k is not Kind.TAC]


# The feed formats are fixed (customs and industry systems are built against them).
HEADERS = {
    Kind.TAC: "tac,brand,model,device_type",
    Kind.MANUFACTURER: "imei,brand,model,tpp_number,maker_id,produced_at",
    Kind.CUSTOMS: "imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid",
    Kind.OPERATOR_DUMP: "imei,imsi,msisdn,first_seen",
    Kind.VISITOR: "imei,passport_number,registered_at,valid_until",
    Kind.EXCEPTION: "imei,category,reference,valid_until",
    Kind.LOST_STOLEN: "imei,report_ref,action,reported_at",
}


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.value)
def test_generated_header_is_the_fixed_feed_format(kind: Kind) -> None:
    """Each kind's generated CSV starts with exactly the column names of the feed format."""
    out = io.StringIO()
    generate(kind, 1, out, seed=1, now=1_700_000_000)
    assert out.getvalue().splitlines()[0] == HEADERS[kind]


def test_same_seed_same_file() -> None:
    """A seed fixes every byte; another seed changes the file."""
    a, b, c = io.StringIO(), io.StringIO(), io.StringIO()
    generate(Kind.CUSTOMS, 200, a, dirt=0.1, seed=7, now=1_700_000_000)
    generate(Kind.CUSTOMS, 200, b, dirt=0.1, seed=7, now=1_700_000_000)
    generate(Kind.CUSTOMS, 200, c, dirt=0.1, seed=8, now=1_700_000_000)
    assert a.getvalue() == b.getvalue() != c.getvalue()


def test_device_imeis_are_valid_and_distinct() -> None:
    """Serial indexes map to distinct valid IMEIs with pool TACs."""
    tacs = {tac_entry(j)[0] for j in range(POOL)}
    imeis = [device_imei(i) for i in range(0, 5_000_000, 997)]
    assert len(set(imeis)) == len(imeis)
    assert all(parse(x).tac in tacs for x in imeis)


@pytest.mark.parametrize("kind", DEVICE_KINDS)
def test_clean_feed_of_every_kind_imports(kind: Kind, tmp_path: Path) -> None:
    """A generated clean feed of each kind imports with no malformed row."""
    with open_store(tmp_path / "db") as store:
        tacs = tmp_path / "tac.csv"
        generate(Kind.TAC, POOL, tacs)
        import_file(store, Kind.TAC, tacs, actor=ACTOR)
        if kind is Kind.LOST_STOLEN:
            maker = tmp_path / "m.csv"
            generate(Kind.MANUFACTURER, 300, maker)
            import_file(store, Kind.MANUFACTURER, maker, actor=ACTOR)
        path = tmp_path / f"{kind.value}.csv"
        generate(kind, 300, path, seed=3)
        summary = import_file(store, kind, path, actor=ACTOR)
        assert summary.malformed == 0
        assert summary.accepted > 150


@pytest.mark.parametrize("kind", DEVICE_KINDS)
def test_dirt_share_is_rejected_as_malformed(kind: Kind, tmp_path: Path) -> None:
    """With --dirt 0.1, about a tenth of the rows are malformed, each reported."""
    with open_store(tmp_path / "db") as store:
        tacs = tmp_path / "tac.csv"
        generate(Kind.TAC, POOL, tacs)
        import_file(store, Kind.TAC, tacs, actor=ACTOR)
        path = tmp_path / f"{kind.value}.csv"
        generate(kind, 2000, path, dirt=0.1, seed=5)
        summary = import_file(
            store, kind, path, actor=ACTOR, options=Options(max_bad_ratio=1, max_new_devices=10**6)
        )
        assert 120 <= summary.malformed <= 260
        assert summary.rows == 2000


def test_tac_dirt_is_the_real_kind(tmp_path: Path) -> None:
    """TAC dirt: 7-digit TACs, leading spaces, short TACs, missing names."""
    with open_store(tmp_path / "db") as store:
        path = tmp_path / "tac.csv"
        generate(Kind.TAC, 2000, path, dirt=0.1, seed=1)
        summary = import_file(store, Kind.TAC, path, actor=ACTOR, options=Options(max_bad_ratio=1))
        assert set(summary.rejected) == {"lost_leading_zero", "bad_tac", "missing_field"}


_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(list(Kind)),
    fmt=st.sampled_from([Format.CSV, Format.JSONL]),
    data=st.data(),
)
def test_writer_reader_round_trip(kind: Kind, fmt: Format, data: st.DataObject) -> None:
    """Whatever the field values, the reader gives back exactly what the writer wrote."""
    import tempfile

    width = len(feed_for(kind).fields)
    written = data.draw(st.lists(st.lists(_text, min_size=width, max_size=width), max_size=8))
    # A CSV row whose every field is empty is a blank line; feeds never have one.
    written = [r for r in written if any(r)] if fmt is Format.CSV else written
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feed"
        with path.open("w", encoding="utf-8", newline="") as f:
            write_rows(kind, written, f, fmt)
        reader = FeedReader(path, feed_for(kind), fmt)
        if fmt is Format.JSONL and not written:  # 0 bytes: an empty file is refused
            with pytest.raises(FeedFormatError, match="is empty: no header"):
                list(reader.rows())
            return
        read = [values for _line, values in reader.rows()]
    assert read == written


def test_generated_rows_round_trip_through_the_reader(tmp_path: Path) -> None:
    """Generated dirty rows come back field for field (dirt is in values, not in format)."""
    kind = Kind.CUSTOMS
    want = list(rows(kind, 500, dirt=0.2, seed=2, now=1_700_000_000))
    for fmt in (Format.CSV, Format.JSONL):
        path = tmp_path / f"c.{fmt.value}"
        with path.open("w", encoding="utf-8", newline="") as f:
            write_rows(kind, want, f, fmt)
        got = [v for _line, v in FeedReader(path, feed_for(kind), fmt).rows()]
        assert got == want
