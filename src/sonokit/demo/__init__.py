"""`sonokit demo`: simulate data for every system, train small models, evaluate, and write one report."""

from sonokit.demo.runner import SYSTEMS, run_demo

__all__ = ["SYSTEMS", "run_demo"]
