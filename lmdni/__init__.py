"""lmdni: recurrent character language models trained with truncated BPTT and synthetic gradients (DNI)."""
__version__ = "0.1.0"
