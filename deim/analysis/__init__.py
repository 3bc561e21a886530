"""Computations behind the paper's figures, kept out of the notebooks so tests reach them."""
