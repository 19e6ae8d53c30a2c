"""The mathematics of distreward: Fréchet distances and subset-replace rewards in float64.

Knows nothing of HTTP or storage; runs on CUDA when present and on the CPU otherwise.
"""

from .adoption import BuiltArrays
from .choices import CreditForm, Method, Mode
from .credits import CreditResult, sample_credits
from .degenerate import DegeneratePool
from .history import VersionNotHeld
from .linalg import frechet_distance, gaussian_of, symmetric_sqrt, trace_sqrt_psd
from .lowrank import QuadratureSettings
from .results import ADVANTAGE_EPSILON, Committed, PoolStatistics, RewardResult
from .reward_engine import RewardEngine
from .validation import MAX_FEATURE_MAGNITUDE

__all__ = [
    "ADVANTAGE_EPSILON",
    "MAX_FEATURE_MAGNITUDE",
    "BuiltArrays",
    "Committed",
    "CreditForm",
    "CreditResult",
    "DegeneratePool",
    "Method",
    "Mode",
    "PoolStatistics",
    "QuadratureSettings",
    "RewardEngine",
    "RewardResult",
    "VersionNotHeld",
    "frechet_distance",
    "gaussian_of",
    "sample_credits",
    "symmetric_sqrt",
    "trace_sqrt_psd",
]
