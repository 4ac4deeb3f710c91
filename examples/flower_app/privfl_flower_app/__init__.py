"""A Flower app training the digits task with privfl SecAgg+ and central DP."""
