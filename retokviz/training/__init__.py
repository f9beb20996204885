"""Training a ViT with a reduction method in place: the configuration and schedules (`loop`), and the command line
(`python -m retokviz.training --help`, in `cli`)."""
from retokviz.training.loop import TrainConfig, TrainResult, keep_rate_at, lr_at, train

__all__ = ["TrainConfig", "TrainResult", "keep_rate_at", "lr_at", "train"]
