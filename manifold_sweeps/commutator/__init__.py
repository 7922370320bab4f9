"""SGD commutators: measured during training (probe.py), projected onto the execution subspace, reduced into tables."""
