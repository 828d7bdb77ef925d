"""One module per parallelism, each with the same small surface: what it does to compute,
memory and communication (bytes per collective and how many per iteration)."""
