"""Compatibility path (README before 0.2): use :func:`hrcam.models.registry.load_network`."""
from hrcam.models.registry import load_network, model_types


def load_neighbour(path):
    """``(network, metadata)`` of CAM / L-CAM / CASM weights (:func:`hrcam.models.registry.load_network`)."""
    return load_network(path, expect=model_types("baseline"), what="CAM / L-CAM / CASM")
