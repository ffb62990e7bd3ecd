"""Stage one of avu: decode videos, run the frozen encoders, cache features in Zarr."""

__version__ = "0.1.0"
