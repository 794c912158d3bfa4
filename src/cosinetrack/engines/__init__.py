"""cosinetrack.engines"""
