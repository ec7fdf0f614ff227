"""Pieces of the boxlite guest payload build; `images/build.py` drives them."""
