"""`python -m golf.bench` = `python -m golf.bench.train` (training throughput)."""

from golf.bench.train import main

if __name__ == "__main__":
    main()
