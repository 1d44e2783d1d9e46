"""Mask views: a layer's mask at any epoch, density grids, input connectivity, per-layer series, weight ages."""
