"""The library layer: Runtime, Box, lifecycle, errors. No click or rich here."""
