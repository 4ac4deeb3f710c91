"""Flower's fl-dp-sa app (central DP + SecAgg+) on privfl: only imports and constructor arguments differ."""
