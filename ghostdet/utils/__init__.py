"""Helpers below every other layer: safe file writing and run-folder claims."""
