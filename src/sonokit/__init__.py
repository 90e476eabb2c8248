"""sonokit: deep learning on medical ultrasound, from scanner files to explainable models."""

__version__ = "0.1.0"
