"""Merging models by matching their units: permutation specs, unit matching, weight averaging."""
