"""python -m retokviz.train --help"""
from retokviz.train.cli import main

main()
