"""``make bench``: Indelible side by side with its PyPI peers (see ``bench/__main__.py``)."""
