"""polymodal: any-to-any vision models in the design of 4M-21."""

__version__ = "0.1.0"
