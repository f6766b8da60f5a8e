"""Tools for developers and SREs that no production process imports: the local stack of
``make run`` (``devstack``) and the benchmark against the Temporal floor (``bench``). The
``epay`` command reaches ``bench`` only when ``epay bench`` is run."""
