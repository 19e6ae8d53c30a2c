"""The choices a reward request makes, declared once: the service's schemas and routes type their
parameters with these, and the engine checks untyped callers against the same values."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["CREDIT_FORMS", "METHODS", "MODES", "SEED_LIMIT", "CreditForm", "Method", "Mode"]

Mode = Literal["shared", "independent", "indices"]
"""Which pool rows a group replaces: one random set for all groups of a request (``shared``,
common random numbers), one per group (``independent``), or the caller's (``indices``)."""

Method = Literal["lowrank", "exact"]
"""How ``tr sqrt`` of the modified pool is computed: certified quadrature with exact fallback per
group (``lowrank``), or one ``eigvalsh`` per group (``exact``)."""

CreditForm = Literal["add", "replace"]
"""What a per-sample credit measures: the FD change of adding the sample to the pool (``add``: no
pool row involved, so one sample at one pool version has one credit on every rank, replica and
call), or of replacing one pool row by it (``replace``: the paper's subset-replace with groups of
one, comparable with group rewards; its value carries the replaced row's own influence)."""

MODES: tuple[Mode, ...] = get_args(Mode)
CREDIT_FORMS: tuple[CreditForm, ...] = get_args(CreditForm)
METHODS: tuple[Method, ...] = get_args(Method)

SEED_LIMIT = 2**63
"""Seeds lie in ``[0, SEED_LIMIT)``: numpy's generators take non-negative seeds, and 63 bits
keep every seed a signed 64-bit integer for other languages' clients."""
