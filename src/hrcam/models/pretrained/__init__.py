"""HR-CAM on pretrained classifiers: torchvision / EfficientNet-Lite0 backbones and the decoder."""
