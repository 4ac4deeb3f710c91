"""Benchmark app: one Flower app, SecAgg+ from privfl or from Flower chosen by the run config ``impl``."""
