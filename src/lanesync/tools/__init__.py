"""Tools around the product for the demo, tests and benchmarks: the fault-injecting proxy,
the process harness, the throwaway PostgreSQL server, and the network-namespace test network
with its API agent."""
