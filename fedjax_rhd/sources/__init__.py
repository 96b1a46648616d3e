"""Where a run's table comes from: use cases, simulators and real cohorts registered as sources."""

from fedjax_rhd.sources.use_case import UseCase

__all__ = ["UseCase"]
