"""cosinetrack.networks"""
