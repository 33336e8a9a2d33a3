"""Test configuration: float64 available (as in diffrax's test suite); the Monte Carlo still
runs in float32 unless a test asks for float64 explicitly; silent rank promotion is an error."""

import os
import sys

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py
