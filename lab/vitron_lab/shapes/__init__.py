"""ShapesWorld: a synthetic visual world with exact ground truth, for training and measuring the tiny VITRON."""
