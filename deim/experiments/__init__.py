"""Reproduction experiments: run specs keyed by config hash, a run cache, the scale protocols."""
