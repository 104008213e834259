"""The collaboration engine: wire protocol, rounds, aggregators and consumers."""
