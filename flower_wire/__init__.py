"""Flower's side of ``fedaso.wire``: conversions between Flower records and plain payloads.

``fedaso`` never imports Flower, and neither ``clients`` nor ``strategies`` imports the
other; both import this package for the few conversions that need Flower's types.
"""
