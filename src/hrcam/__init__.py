"""hrcam: high-resolution class activation maps."""
__version__ = "0.1.0"
