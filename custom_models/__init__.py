"""Worked examples of user models for ``model = py:MODULE:FACTORY``."""
