"""python -m retokviz.train --help"""
from retokviz.training import main

main()
