"""manifold-sweeps: trajectory geometry of small transformers trained on marker arithmetic."""

__version__ = "0.1.0"
