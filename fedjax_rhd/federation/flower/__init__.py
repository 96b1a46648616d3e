"""The Flower backend: Flower apps, records and local deployments of SuperLink and SuperNodes."""
