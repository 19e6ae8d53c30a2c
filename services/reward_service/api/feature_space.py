"""The ``Feature-Space`` header: which feature space the features a request posts come from.

One mechanism for every route that posts features (rewards, credits, commit, fd, pool and target
uploads), whatever the body's wire format: a header, read by the dependency below before the
body is. The rules are :mod:`reward_service.feature_spaces`'.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from ..feature_spaces import (
    FEATURE_SPACE_HEADER,
    FEATURE_SPACE_MAX_LENGTH,
    FEATURE_SPACE_PATTERN,
    check_feature_space,
)
from .deps import RefName, ServiceDep

__all__ = ["DeclaredFeatureSpace", "FeatureSpaceDep"]

DeclaredFeatureSpace = Annotated[
    str | None,
    Header(
        alias=FEATURE_SPACE_HEADER,
        max_length=FEATURE_SPACE_MAX_LENGTH,
        pattern=FEATURE_SPACE_PATTERN,
        description=(
            "identifier of the feature space the posted features come from (e.g. "
            "'fid-inception-v3/pool3@sha256:6726825d0af5f729/rgb-u8,resize=bilinear-299,"
            "range=-1..1'), compared as an exact string with the reference's (409 when they "
            "differ); may be left out only for references of feature space 'unknown'"
        ),
    ),
]


def _feature_space(
    name: RefName, service: ServiceDep, feature_space: DeclaredFeatureSpace = None
) -> str | None:
    """The declared space; refused (409) at once when this process holds the reference in
    another one, so a body of the wrong space is never read. The service checks again against
    the version it serves."""
    held = service.held_feature_space(name)
    if held is not None:
        check_feature_space(name, held, feature_space)
    return feature_space


FeatureSpaceDep = Annotated[str | None, Depends(_feature_space)]
