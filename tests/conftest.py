"""Test configuration: float64 available (as in diffrax's test suite); the Monte Carlo
still runs in float32 unless a test asks for float64 explicitly."""
import jax

jax.config.update("jax_enable_x64", True)
