"""The OpenAPI document is the contract: ``schemathesis run --checks all`` over every operation,
with a trainer token and with an admin token, against a real ``python -m reward_service``.

Every check holds: no 5xx; every answer's status, content type, headers and body documented;
schema-valid requests accepted (or refused only for the reference's state: 404, 409) and
schema-invalid ones refused; required headers and tokens enforced; 405 with the right ``Allow``.
Warnings fail the run too, "mostly rejected generated data" among them: the document states the
shapes, sizes and value ranges the service enforces. How generated cases meet the reference, and
which facts a positive case is given because JSON Schema cannot state them: :mod:`contract_data`.

The suite's run is deterministic (schemathesis's deterministic generation, one worker, no example
database) and bounded (``DISTREWARD_FUZZ_EXAMPLES``, default 20, per operation and phase). For a
longer hunt, raise it and set ``DISTREWARD_FUZZ_RANDOM=1``: new examples each run, the seed in
the summary, ``DISTREWARD_FUZZ_SEED=<seed>`` repeats one. Run with ``-s`` to see the summary.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from contract_data import LIMITS, REFERENCE, create
from schemathesis.config import SchemathesisWarning
from service_support import ADMIN_TOKEN, TRAINER_TOKEN, ServiceProcess, service_process

HERE = Path(__file__).parent
MAX_EXAMPLES = int(os.environ.get("DISTREWARD_FUZZ_EXAMPLES", "20"))
RANDOM = os.environ.get("DISTREWARD_FUZZ_RANDOM") == "1"
SEED = os.environ.get("DISTREWARD_FUZZ_SEED", "" if RANDOM else "0")
# Answers that refuse a schema-invalid request; 413 (a batch over the limits) among them.
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]


def config(warnings: list[str]) -> str:
    """The run's ``schemathesis.toml``: every warning in ``warnings`` fails it."""
    return f"""
hooks = "contract_hooks"
workers = 1
{f"seed = {SEED}" if SEED else ""}
# A busy CI machine: no answer is late enough to fail the run, and no check depends on timing.
request-timeout = 120
suppress-health-check = ["too_slow"]
[generation]
deterministic = {str(not RANDOM).lower()}
max-examples = {MAX_EXAMPLES}
database = "none"
[checks.negative_data_rejection]
expected-statuses = {REFUSALS!r}
[warnings]
display = {warnings!r}
fail-on = {warnings!r}
"""


@pytest.fixture(scope="module")
def contract_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A service (memory store) holding :data:`~contract_data.REFERENCE`: d = D, N rows."""
    env = {f"DISTREWARD_{name}": value for name, value in LIMITS.items()}
    service = service_process("", tmp_path_factory.mktemp("contract") / "service.log", **env)
    try:
        service.wait_ready()
        create(service.url, ADMIN_TOKEN, REFERENCE)
        yield service
    finally:
        service.stop()


@pytest.mark.parametrize("role", ["trainer", "admin"])
def test_schemathesis_every_check_every_operation(
    contract_service: ServiceProcess, role: str, tmp_path: Path
) -> None:
    token = TRAINER_TOKEN if role == "trainer" else ADMIN_TOKEN
    config_file = tmp_path / "schemathesis.toml"
    # Every warning fails the run, "mostly rejected generated data" and a low share of accepted
    # positive cases among them; a trainer token meets only 403 on the admin routes, as it should.
    warnings = [
        warning.value
        for warning in SchemathesisWarning
        if role == "admin" or warning is not SchemathesisWarning.MISSING_AUTH
    ]
    config_file.write_text(config(warnings))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "CONTRACT_URL": contract_service.url,  # contract_data.prepare, in the hooks
        "CONTRACT_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config_file),
            "run",
            f"{contract_service.url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    document = httpx.get(f"{contract_service.url}/openapi.json", timeout=30).json()
    operations = sum(len(methods) for methods in document["paths"].values())
    assert f"Selected: {operations}/{operations}" in run.stdout, run.stdout[-5000:]
    assert f"Tested: {operations}" in run.stdout, run.stdout[-5000:]
    print(run.stdout[run.stdout.index("SUMMARY") :])
