"""The reduction methods, one module each."""
from retokviz.methods.base import Method, Regroup
from retokviz.methods.evit import EViT

__all__ = ["EViT", "Method", "Regroup"]
