"""Training with Lightning: data module, LightningModules for the HR-CAM networks, and ``fit``."""
