"""Activation pairs."""
