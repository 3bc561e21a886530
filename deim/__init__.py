"""deim: a compact reference implementation of DEIM (DETR with Improved Matching)."""

__version__ = "0.1.0"
