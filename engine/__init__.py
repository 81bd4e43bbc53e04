"""Streaming inference engine for ImageNet classifiers."""
