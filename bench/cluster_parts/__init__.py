"""bench/cluster.py, split by concern: `clients` (the capacity bench's aiortc callers and
agents, signalling through the product's REST API and WebSockets), `run` (a measured
cluster or one machine's workers, and the ramp), `bridge` (the signal bridge's added
latency)."""
