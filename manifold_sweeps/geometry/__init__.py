"""Geometry of weight trajectories, numpy only: spectra of snapshot sets and principal angles.

`spectrum.py` turns the snapshots of one matrix into the eigenvalues of their covariance (through
the n x n Gram matrix, never the d^2 x d^2 covariance), effective ranks and principal directions;
`subspaces.py` compares subspaces through their principal angles.
"""
