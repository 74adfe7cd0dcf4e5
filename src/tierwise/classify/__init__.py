"""Classifiers: one module per classification (RFM, ABC, value, grade, lifecycle, loyalty ...)."""
