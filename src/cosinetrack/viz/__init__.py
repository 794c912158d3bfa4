"""cosinetrack.viz"""
