"""The one subset rule: round-robin over the classes."""
from hrcam.data.splits import round_robin


def test_round_robin_takes_every_class_before_any_second_image():
    labels = [2, 0, 0, 1, 0, 2, 1]
    # by hand: first of class 0 (pos 1), of 1 (3), of 2 (0); then the seconds: 0 (2), 1 (6), 2 (5); then 0 (4)
    assert round_robin(labels) == [1, 3, 0, 2, 6, 5, 4]
    assert sorted(labels[i] for i in round_robin(labels)[:3]) == [0, 1, 2]
    assert round_robin([]) == []
