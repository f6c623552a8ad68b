"""Does nothing: the benchmark's measure of what a Python task costs the host."""

REQUIREMENT = {"cpu_cores": 1, "cpu_threads": 1, "memory_mb": 64}


def execute(ctx, input):
    return {}
