"""Baseline map methods with their own networks: CAM fine-tuning, L-CAM and CASM."""
