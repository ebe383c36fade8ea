"""The shared confusion-matrix figure: a real PNG with one panel per matrix."""

import io

import matplotlib.image as mpimg

from dfp.ml.plots import confusion_matrices_png


def test_one_panel_per_matrix_in_a_png():
    matrix = [[5, 1], [2, 3]]
    one = mpimg.imread(io.BytesIO(confusion_matrices_png([("a", matrix)], ("no", "yes"))))
    two = mpimg.imread(
        io.BytesIO(confusion_matrices_png([("a", matrix), ("b", matrix)], ("no", "yes")))
    )
    assert one.shape[0] == two.shape[0]  # same height
    assert two.shape[1] == 2 * one.shape[1]  # a panel's width each
