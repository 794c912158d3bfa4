"""cosinetrack.io"""
