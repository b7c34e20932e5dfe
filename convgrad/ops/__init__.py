"""convgrad's operations, one module each: public function, ``_fwd``, ``_bwd``, ``defvjp``.

The public names are re-exported from :mod:`convgrad`; import them from there.
"""
