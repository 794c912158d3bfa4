"""cosinetrack.transforms"""
