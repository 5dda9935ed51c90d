"""Training the tiny VITRON: packing, losses, stages."""
