"""Each 2-D model potential's box ((x0, x1), (y0, y1)): the range of its reference grid and
plots. Plain data, so that spec validation reads it without importing torch."""

MODEL_BOXES = {"mueller-brown": ((-1.7, 1.3), (-0.5, 2.2)), "wolfe-quapp": ((-2.2, 2.2), (-2.2, 2.2)),
               "double-well": ((-2.0, 2.0), (-1.5, 1.5))}
