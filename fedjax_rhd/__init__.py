"""fedjax_rhd: declarative federated-learning experiments for rare haematological diseases."""

__version__ = "0.1.0"
