"""Data: image folders, input conversion, augmentation, the Animals subset and the demo set."""
