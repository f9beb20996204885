"""`python -m retokviz.train`: the trainer's command line (retokviz/train/cli.py). The library function is
`rv.train` (retokviz/training.py).

Python sets a submodule as an attribute of its package when the submodule is first imported. `retokviz/__init__.py`
imports this package first and binds `train` to the function afterwards, so `rv.train` stays the function however
often `retokviz.train` is imported later (an import of a loaded module sets nothing). Use
`from retokviz.train.cli import main` to reach the command line from code.
"""
