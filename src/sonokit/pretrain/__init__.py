"""Self-supervised pretraining on unlabelled scans (`sonokit pretrain`): a backbone that `train --weights` starts from.

Users have far more unlabelled cines and images than labels. SimCLR (Chen et al. 2020) learns a backbone by making
two random views of one frame agree and views of different frames differ; it needs no labels, no momentum network
and few hyper-parameters, and it works with every 2D backbone of the registry. The views are ultrasound-aware:
crops at another depth and zoom, gain and time-gain-compensation changes, speckle and blur.
"""

from sonokit.pretrain.run import BACKBONE_FILE, PretrainConfig, pretrain

__all__ = ["BACKBONE_FILE", "PretrainConfig", "pretrain"]
