"""`python -m retokviz.train`: the command line of `retokviz.training` (the library function is `rv.train`)."""
