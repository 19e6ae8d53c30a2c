"""Feature spaces: which network, weights and preprocessing made a reference's features.

A Fréchet distance compares features of one space only; rewards of features from another network
against a reference are confident and meaningless. A reference records the identifier of its
space when it is created (from its target's ``feature_space`` member, as ``reward_client``'s
statistics files carry it, or from the admin's ``Feature-Space`` header), and every request that
posts features names theirs in the ``Feature-Space`` header. The identifiers are compared as
exact strings: the service does not parse them.

A reference built from statistics without provenance (pytorch-fid, ADM, EDM files) records
``"unknown"``, only when the admin asks for it, whether the statistics name no space or name
``"unknown"`` itself. Requests without the header match only such a
reference; against a reference with a known space they are refused, so features of one network
cannot reach a reference of another by accident.
"""

from __future__ import annotations

from .errors import Conflict, Unprocessable

__all__ = [
    "FEATURE_SPACE_HEADER",
    "FEATURE_SPACE_MAX_LENGTH",
    "FEATURE_SPACE_PATTERN",
    "UNKNOWN_FEATURE_SPACE",
    "check_feature_space",
    "feature_space_matches",
    "target_feature_space",
]

#: The space of statistics that record none, accepted as such by the admin.
UNKNOWN_FEATURE_SPACE = "unknown"
FEATURE_SPACE_HEADER = "Feature-Space"
FEATURE_SPACE_MAX_LENGTH = 256
#: Printable ASCII without spaces: an identifier travels in headers and in Redis hash fields.
FEATURE_SPACE_PATTERN = r"^[!-~]+$"


def feature_space_matches(held: str, sent: str | None) -> bool:
    """Whether features of ``sent`` (None: the request names none) may meet a reference of
    ``held``: the same string, or no name for a reference of unknown space."""
    return sent == held or (sent is None and held == UNKNOWN_FEATURE_SPACE)


def check_feature_space(reference: str, held: str, sent: str | None) -> None:
    """Refuse (409) features whose space ``sent`` is not the reference's ``held`` one; a request
    that names none matches only a reference of unknown space."""
    if feature_space_matches(held, sent):
        return
    if sent is None:
        raise Conflict(
            f"feature space mismatch: reference {reference!r} holds features of {held!r} and this "
            f"request names no feature space; send the header '{FEATURE_SPACE_HEADER}: {held}' "
            "if your features come from that extractor (reward_client sends it when its "
            "config's feature_space is set)"
        )
    raise Conflict(
        f"feature space mismatch: reference {reference!r} holds features of {held!r}, this "
        f"request posts features of {sent!r}; compute the features with the reference's "
        "extractor, or use a reference built in your feature space"
    )


def target_feature_space(
    reference: str, from_file: str | None, declared: str | None, accept_unknown: bool
) -> str:
    """The space of a new target: the one its statistics file records, else the admin's
    ``Feature-Space`` header; both present must agree (409). A target that names none, or
    names ``"unknown"`` (in either place), is ``"unknown"`` only when ``accept_unknown``, else
    422 naming both ways to fix it."""
    if from_file is not None and declared is not None and from_file != declared:
        raise Conflict(
            f"feature space mismatch: the target file records {from_file!r} but the "
            f"{FEATURE_SPACE_HEADER} header says {declared!r}; send one of them, or matching ones"
        )
    space = from_file if from_file is not None else declared
    if space is not None and space != UNKNOWN_FEATURE_SPACE:
        return space
    if accept_unknown:
        return UNKNOWN_FEATURE_SPACE
    names = "names no feature space" if space is None else f"names feature space {space!r}"
    raise Unprocessable(
        f"the target of {reference!r} {names}: send the "
        f"'{FEATURE_SPACE_HEADER}' header with the identifier of the extractor that made it "
        "(reward_client's stats files carry it as their feature_space member), or, for "
        "statistics from other tools whose space you cannot name, accept_unknown_feature_space"
        "=true (the reference then records 'unknown' and takes requests without the header)"
    )
