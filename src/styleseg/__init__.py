"""styleseg: a style-based GAN that learns fashion photos and their segmentation maps jointly."""

__version__ = "0.1.0"
