"""Concrete experiment trackers; each imports its library only when chosen (``fedjax_rhd.tracking``)."""
