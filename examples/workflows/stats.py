"""Python functions used as tasks by python_tasks.yaml (``python: stats:square``)."""


def square(x, offset=0):
    return x * x + offset


def write_total(path, expected):
    """Sum the lines written by the `squares` shell sweep; fail loudly if some are missing."""
    with open(path) as handle:
        values = [int(line) for line in handle]
    if len(values) != expected:
        raise ValueError("expected %d values, got %d" % (expected, len(values)))
    with open("total.txt", "w") as handle:
        handle.write("%d\n" % sum(values))
    return sum(values)
