"""Training a ViT with a reduction method in place: what a run is asked (`config`), its keep-rate and learning-rate
schedules (`schedule`), several processes (`distributed`), stopping and resuming (`resume`), the loop itself
(`loop`), and the command line (`python -m retokviz.training --help`, in `cli`)."""
from retokviz.training.config import TrainConfig, TrainResult
from retokviz.training.loop import train
from retokviz.training.schedule import keep_rate_at, lr_at

__all__ = ["TrainConfig", "TrainResult", "keep_rate_at", "lr_at", "train"]
