"""cosinetrack.metrics"""
