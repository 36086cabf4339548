"""Layers torch lacks, one concept per module: gate, Dirac conv, NCReLU, highway, residual."""
