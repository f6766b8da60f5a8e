"""Kept only for the modules not yet moved to ``store.department_secrets``, where the
departments' sealed signing secrets now live; import from there."""

from store.department_secrets import SigningSecret as SigningSecret
from store.department_secrets import active as active
from store.department_secrets import create as create
from store.department_secrets import retire as retire
