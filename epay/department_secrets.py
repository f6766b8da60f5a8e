"""Kept only for modules not yet moved to ``store.department_secrets``, where the
departments' sealed signing secrets now live; import from there. No module of the product
uses it any longer: it goes once no branch in progress does."""

from store.department_secrets import SigningSecret as SigningSecret
from store.department_secrets import active as active
from store.department_secrets import create as create
from store.department_secrets import retire as retire
