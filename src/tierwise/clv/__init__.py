"""Predictive customer lifetime value: BG/NBD, MBG/NBD, Pareto/NBD and Gamma-Gamma models, the RFM summary they
read, and discounted CLV; BG/BB for discrete opportunities and the sBG retention model for contracts. Names follow
lifetimes, so users can switch.

The names are loaded on first use: tierwise.config reads the [clv] section from tierwise.clv.settings, which
imports this package first, and the models' imports (pandas, numpy) added 0.7 s to every command that only
reads the configuration (import of tierwise.workspace 1.9 s → 2.7 s)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tierwise.clv.bgbb import BetaGeoBetaBinomModel
    from tierwise.clv.bgnbd import BetaGeoModel
    from tierwise.clv.gamma_gamma import GammaGammaModel
    from tierwise.clv.mbgnbd import ModifiedBetaGeoModel
    from tierwise.clv.pareto_nbd import ParetoNBDModel
    from tierwise.clv.sbg import ShiftedBetaGeoModel
    from tierwise.clv.summary import rfm_summary
    from tierwise.clv.value import customer_lifetime_value

_HOMES = {
    "BetaGeoBetaBinomModel": "tierwise.clv.bgbb",
    "BetaGeoModel": "tierwise.clv.bgnbd",
    "GammaGammaModel": "tierwise.clv.gamma_gamma",
    "ModifiedBetaGeoModel": "tierwise.clv.mbgnbd",
    "ParetoNBDModel": "tierwise.clv.pareto_nbd",
    "ShiftedBetaGeoModel": "tierwise.clv.sbg",
    "customer_lifetime_value": "tierwise.clv.value",
    "rfm_summary": "tierwise.clv.summary",
}
__all__ = [
    "BetaGeoBetaBinomModel",
    "BetaGeoModel",
    "GammaGammaModel",
    "ModifiedBetaGeoModel",
    "ParetoNBDModel",
    "ShiftedBetaGeoModel",
    "customer_lifetime_value",
    "rfm_summary",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'tierwise.clv' has no attribute '{name}'")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
