"""Helpers the whole package shares, one home each: argument checks (`checks`), files written whole (`files`), the
device (`device`), PNG encoding (`png`) and the environment's yes/no switches (`env`)."""

VERSION = "0.1.0"
