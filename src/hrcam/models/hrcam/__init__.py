"""The HR-CAM networks trained from scratch: FC-DenseNet parts and HalfNet / FullNet."""
