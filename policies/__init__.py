"""The default policy bundle ships as files next to this module."""

from pathlib import Path

BUNDLE_DIR = Path(__file__).resolve().parent
