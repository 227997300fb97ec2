"""The public Python API: the seed's HalfModel / FullModel (:mod:`.seed`) and pretrained classifiers (:mod:`.pretrained`)."""
