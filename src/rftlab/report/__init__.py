"""Figures and reports built from run directories."""
