"""backend=flower: the same federation on Flower 1.42 (simulation engine, or a local or remote deployment)."""
