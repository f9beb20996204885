"""The reduction methods, one module each, and their composition."""
from retokviz.methods.base import Method, Reduced, Regroup
from retokviz.methods.dynamicvit import DynamicViT
from retokviz.methods.evit import EViT
from retokviz.methods.imagepiece import ImagePiece
from retokviz.methods.tome import ToMe

__all__ = ["DynamicViT", "EViT", "ImagePiece", "Method", "Reduced", "Regroup", "ToMe"]
