"""Analyses of trained networks from the papers: pruning, lesioning, gates, folding, SDI, export."""
