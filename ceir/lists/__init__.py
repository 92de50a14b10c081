"""The lists the CEIR hands to operators, in DIRBS's formats (DOMAIN.md §7).

``ceir lists export`` writes the blacklist (``imei,block_date,reasons``) and, per
operator, the notifications and exceptions lists, full and — against a base run — as
one delta file per change kind, with zipped copies. :mod:`~ceir.lists.kinds` names the
lists, columns and files; :mod:`~ceir.lists.collect` takes the rows from the store;
:mod:`~ceir.lists.delta` diffs two runs; :mod:`~ceir.lists.export` writes and records a
run (:mod:`ceir.store.lists` keeps the runs).
"""

from __future__ import annotations
