"""cosinetrack.data"""
