"""Clone detection with pairing (issue 14): one IMEI on several SIMs at once.

- :mod:`ceir.clones.recorder` — the faces' observer: sightings queued off the hot path and
  written in batches;
- :mod:`ceir.clones.conditions` — DIRBS-like conditions (duplicate threshold, simultaneity);
- :mod:`ceir.clones.detector` — sightings merged, conditions evaluated, transitions written;
- :mod:`ceir.clones.actions` — a principal's clear / pair / unpair;
- :mod:`ceir.clones.upstream` — an operator's replica sends counts and its own tokens to
  the central register over JetStream, signed; the central ingests them.

The tables are in :mod:`ceir.store.clonetables`, the lists' reads in :mod:`ceir.store.clones`.
The design is in ``docs/clones.md``.
"""
