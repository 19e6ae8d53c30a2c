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
    feature_space_matches,
)
from ..service import PostedFeatures
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


async def _feature_space(
    name: RefName, service: ServiceDep, feature_space: DeclaredFeatureSpace = None
) -> PostedFeatures:
    """The declared space, refused (409) before the body is read when it does not match the
    reference's as this process holds it (no store access); a mismatch is confirmed on the
    stored record, which may be newer (a reference deleted and created again elsewhere in
    another space). Returned with the record it was checked against, which the array body
    checks the features' d against too (:mod:`.array_body`); without one (the reference is not
    held) the service checks both against the version it serves."""
    held = service.held_meta(name)
    if held is not None and not feature_space_matches(held.feature_space, feature_space):
        held = (await service.view(name)).state.meta
        check_feature_space(name, held.feature_space, feature_space)
    return PostedFeatures(feature_space, held)


FeatureSpaceDep = Annotated[PostedFeatures, Depends(_feature_space)]
