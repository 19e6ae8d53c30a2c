"""What this process holds of the stored references, and how it keeps it current.

* ``replica`` — one reference as this process holds it (``Replica``): an engine at some version,
  loaded from the store's base and kept current by replaying its log; background rebuilds.
* ``replica_set`` — every reference this process holds (``ReplicaSet``), its standing with the
  store (health, the stale-read policy) and the isolation of references that cannot be loaded.
* ``freshness`` — how much of a held pool recent commits replaced, and its turnover.
* ``workers`` — the threads engine calls run in, by how long they take and who waits for them.

Nothing is re-exported here: ``settings`` reads the freshness defaults, and importing the replica
set (which needs the settings) from this package's root would make that import a cycle.
"""

__all__: list[str] = []
