"""KPI kinds: one module per kind of aggregate, each owning that kind's field encoding.

A kind module is the only place that knows how its aggregate is laid out inside a key (the key
names themselves are ``schemas/keyspace.py``'s): the worker (``aggregator``), the backfill and the
KPI API encode and parse fields through it, never by hand.

- ``kinds.uniques``: HyperLogLogs of actors or of a field's values per shard and day.
- ``kinds.count``: event counters per name and hour, and counts by dimension.
- ``kinds.sum``: exact scaled integer sums.
- ``kinds.top``: sorted sets of a field's values (and all-time tables).
- ``kinds.session``: the paired start/end duration sketch (DDSketch, ``schemas/sketch.py``).
- ``kinds.retention``: the share of a day's actors active again N days later, from the daily HLLs.
- ``kinds.first_seen``: actors ever seen up to each day, and first seen on it, from the daily HLLs.

The declarations (``schemas.kpis.Kpi``) and the kind names are the contract in ``schemas``.
"""
