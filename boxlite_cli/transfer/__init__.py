"""Tar streams of `boxlite cp`: made from host files, and extracted as untrusted input."""
