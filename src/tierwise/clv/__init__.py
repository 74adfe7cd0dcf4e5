"""Predictive customer lifetime value: BG/NBD, Pareto/NBD and Gamma-Gamma models, the RFM summary they read,
and discounted CLV. Names follow lifetimes, so users can switch."""

from tierwise.clv.bgnbd import BetaGeoModel
from tierwise.clv.gamma_gamma import GammaGammaModel
from tierwise.clv.pareto_nbd import ParetoNBDModel
from tierwise.clv.summary import rfm_summary
from tierwise.clv.value import customer_lifetime_value

__all__ = ["BetaGeoModel", "GammaGammaModel", "ParetoNBDModel", "customer_lifetime_value", "rfm_summary"]
