"""python -m retokviz.training --help"""
from retokviz.training.cli import main

main()
