"""Explanations: Grad-CAM heatmaps and their overlays on the input image."""

from sonokit.explain.gradcam import find_gradcam_layer, gradcam
from sonokit.explain.overlay import overlay_heatmap

__all__ = ["find_gradcam_layer", "gradcam", "overlay_heatmap"]
