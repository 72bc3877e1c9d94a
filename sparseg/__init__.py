"""SPARSeg: 2D UNet++ segmentation of neonatal hypoxic-ischemic brain lesions (BONBID-HIE)."""

__version__ = "0.1.0"
