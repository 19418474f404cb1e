"""Optimizers whose update rules are written out by hand (see the optimizers issue)."""
