"""A Django app holding ``indelible_outbox``: add it to ``INSTALLED_APPS`` and ``migrate``.

The table is written by :mod:`indelible.sdk.integrations.django` inside the application's
transactions and emptied by its relay; nothing else should use it.
"""
