"""cosinetrack.handlers"""
