"""Setup of the merge tests; their ``service`` fixture (a real reward-service process on a
loopback port) is in ``tests/conftest.py``."""

from __future__ import annotations

import sys
from pathlib import Path

# merge_toy sits beside the tests; the CLI test's subprocess imports it by this path too.
sys.path.insert(0, str(Path(__file__).parent))
