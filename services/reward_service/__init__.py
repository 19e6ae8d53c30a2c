"""distreward reward service: distribution-wise (subset-replace Fréchet) rewards over HTTP.

Where things live (each module's docstring says more):

* ``app`` — ``create_app(settings)``: the application, assembled in one place;
  ``__main__`` serves it with uvicorn (``python -m reward_service``).
* ``settings`` — every setting (``DISTREWARD_*``), one pydantic-settings class.
* ``api/`` — HTTP only: one router per resource, dependencies, wire formats, error mapping.
  A new route goes there.
* ``limits`` — what a request may send (shapes, sizes, value ranges, target statistics),
  each rule run once per request, where it can first run (its docstring says where: shapes
  on ``.npy`` headers and JSON text, values on decoded arrays). A new limit goes there.
* ``feature_spaces`` — the rules of feature-space identifiers: which posts match a
  reference's space, and the space a new target records (the header: ``api/``).
* ``admission`` — what one token may hold at once (requests in flight, compute slots, decode
  memory), refused with 429; ``cost`` — a rewards or credits request's estimated engine work
  and its bound (413). ``api/json_array.py`` decodes JSON arrays within that memory.
* ``service`` — the use cases behind the routes (``ReferenceService``); knows no HTTP.
* ``replication/`` — what this process holds of the references: ``replica_set``, every
  reference held, its catch-up, the stale-read policy, store health and the isolation of
  references that cannot be loaded (``ReplicaSet``); ``replica``, one reference's held state
  and its replay of the log; ``freshness``, how much of a pool recent commits replaced;
  ``workers``, the threads engine calls run in.
* ``store/`` — persistence behind one interface (memory, Redis). A new store goes there.
* ``engine/`` — the mathematics (float64 Fréchet distances, subset-replace rewards); imports
  neither FastAPI nor Redis.
* ``errors`` — the service errors, each mapped to one HTTP status by ``api/errors.py``;
  ``metrics`` — the Prometheus metrics, labels from bounded sets.

Starting the service and Redis as local child processes (the demo, tests and benchmarks) is not
the service's job: ``support.launch`` in the repository does it, outside the wheel.

The package root stays import-light on purpose: ``reward_service.engine`` must stay importable
without FastAPI or Redis.
"""

__all__: list[str] = []
