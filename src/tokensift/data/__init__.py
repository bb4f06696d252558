"""Data contract: every input row becomes a PreferenceExample; tokenisation puts responses in label space."""

from tokensift.data.example import PreferenceExample

__all__ = ["PreferenceExample"]
