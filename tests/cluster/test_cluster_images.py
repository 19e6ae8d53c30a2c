"""The Dockerfiles: hadolint, and what the cluster relies on that hadolint does not check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cluster_support import DOCKER, run_tool, tool

DOCKERFILES = sorted(DOCKER.glob("*/Dockerfile"))
SERVICE = DOCKER / "service" / "Dockerfile"
TRAINER = DOCKER / "trainer" / "Dockerfile"
PROJECT_IMAGES = [SERVICE, TRAINER]  # docker/standins/ stands in for registry images in tests


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = (line.strip() for line in text.splitlines())
    pairs = (line.split(None, 1) for line in lines if line and not line.startswith("#"))
    return [(word.upper(), rest[0] if rest else "") for word, *rest in pairs]


def test_both_images_and_the_stand_ins_have_a_dockerfile() -> None:
    assert [p.parent.name for p in DOCKERFILES] == ["service", "standins", "trainer"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_passes_hadolint(path: Path) -> None:
    run_tool(tool("hadolint"), "--no-color", path)


@pytest.mark.parametrize("path", PROJECT_IMAGES, ids=lambda p: p.parent.name)
def test_image_runs_as_a_numeric_non_root_user(path: Path) -> None:
    users = [args for word, args in instructions(path) if word == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1])


@pytest.mark.parametrize("path", PROJECT_IMAGES, ids=lambda p: p.parent.name)
def test_nothing_but_packages_is_downloaded_at_build_time(path: Path) -> None:
    runs = " ".join(args for word, args in instructions(path) if word in ("RUN", "ADD"))
    assert not re.search(r"\b(curl|wget|huggingface|hf_hub|gdown|https?://)", runs)


def test_service_image_is_cuda_with_a_cpu_build_argument_and_a_health_check() -> None:
    steps = instructions(SERVICE)
    assert any(word == "ARG" and args.startswith("BASE_IMAGE=nvidia/cuda:") for word, args in steps)
    assert ("FROM", "${BASE_IMAGE}") in steps
    assert any(word == "ARG" and args.startswith("TORCH_INDEX_URL=") for word, args in steps)
    (health,) = [args for word, args in steps if word == "HEALTHCHECK"]
    assert "/readyz" in health


@pytest.mark.parametrize("path", PROJECT_IMAGES, ids=lambda p: p.parent.name)
def test_base_image_and_torch_index_are_build_arguments(path: Path) -> None:
    """What the live cluster test swaps (scripts/cluster_setup.sh) to build without a registry."""
    steps = instructions(path)
    assert steps[0][0] == "ARG" and steps[0][1].startswith("BASE_IMAGE=")
    assert ("FROM", "${BASE_IMAGE}") in steps
    declared = {args.split("=", 1)[0] for word, args in steps if word == "ARG"}
    assert {"TORCH_INDEX_URL", "TORCH_VERSION"} <= declared
