"""Tools around the product: the fault-injecting proxy used by the demo, tests and benchmarks."""
