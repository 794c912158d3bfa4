"""cosinetrack.losses"""
