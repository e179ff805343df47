"""The Django app of the capture tests (``tests/sdk/test_django_capture.py``)."""
