"""capturekit centre: the server kits upload to (kit_api.py), its database, object store, rosters and exports.

The kit package imports only :mod:`centre.sealing` and :mod:`centre.makeup_qr` from here (they need PyNaCl
alone); everything else needs the ``centre`` extra (``pip install .[centre]``). Map: ``docs/centre.md``.
"""

__version__ = "0.1.0"
