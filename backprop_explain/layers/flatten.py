"""Flatten: the cells of an image (channels, rows, columns) in one vector.

Row-major, channels first, as PyTorch's x.view(x.size(0), -1): cell (c, r, s) of a
C×H×W image goes to position c·H·W + r·W + s. It computes nothing: the next layer
reads each cell under its own name, so flatten adds no quantity to the graph
(images are already kept as lists in this order).
"""


def flatten_order(shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """(c, r, s) of each position of the flattened vector."""
    channels, rows, columns = shape
    return [(c, r, s) for c in range(channels) for r in range(rows) for s in range(columns)]


def flatten(grid) -> list:
    """The vector of an image given as nested lists [channel][row][column]."""
    return [grid[c][r][s] for c, r, s in flatten_order(
        (len(grid), len(grid[0]), len(grid[0][0])))]
