"""samsar: SAM adapted to SAR semantic segmentation."""
__version__ = "0.1.0"
