"""The feed kinds by name."""

from __future__ import annotations

from ceir.feeds import Kind
from ceir.feeds.base import Feed
from ceir.feeds.customs import CustomsFeed
from ceir.feeds.exception import ExceptionFeed
from ceir.feeds.lost_stolen import LostStolenFeed
from ceir.feeds.manufacturer import ManufacturerFeed
from ceir.feeds.operator_dump import OperatorDumpFeed
from ceir.feeds.tac import TacFeed
from ceir.feeds.visitor import VisitorFeed

FEEDS: dict[Kind, Feed] = {
    feed.kind: feed
    for feed in (
        TacFeed(),
        ManufacturerFeed(),
        CustomsFeed(),
        OperatorDumpFeed(),
        VisitorFeed(),
        ExceptionFeed(),
        LostStolenFeed(),
    )
}


def feed_for(kind: Kind) -> Feed:
    """The feed of *kind*."""
    return FEEDS[kind]
