"""Models the Django capture tests change: a customer, and invoices that refer to one."""

from __future__ import annotations

from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "django_capture_app"


class Invoice(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, null=True)
    status = models.CharField(max_length=20)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    due_on = models.DateField(null=True)
    iban = models.CharField(max_length=34, default="")
    notes = models.TextField(default="")  # never recorded
    code = models.CharField(max_length=40, unique=True, null=True)

    class Meta:
        app_label = "django_capture_app"
