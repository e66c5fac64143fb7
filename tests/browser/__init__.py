"""Helpers of the template's browser tests: the rendered client, driven in headless Chromium."""
