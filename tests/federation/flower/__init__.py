"""Tests of the Flower backend."""
