"""Benchmarks: `python -m golf.bench.<name>` scripts whose output the README and closing notes quote.

train (also `python -m golf.bench`): training throughput of the real loop. Other modules measure one capability
each (record bundling, evaluation modes, GPU checks); tests check correctness, these measure speed and bytes.
"""
